"""Theory: the discrete-time DMFT of the perceptron and Gardner's capacity (docs/physics.md A2, A8).

Plain arrays and dataclasses: the dmft artifact is built by sgdnoise.stages.dmft. Never
imports the simulator (dynamics, stages) it is checked against.
"""

from sgdnoise.theory.dmft import DmftSolution, solve_discrete_dmft
from sgdnoise.theory.gardner import gardner_capacity
from sgdnoise.theory.problem import DmftProblem, UnsupportedPointError, problem_from_point

__all__ = [
    "DmftProblem",
    "DmftSolution",
    "UnsupportedPointError",
    "gardner_capacity",
    "problem_from_point",
    "solve_discrete_dmft",
]
