"""sgdnoise: the noise of stochastic gradient descent, measured and computed.

Subpackages: config (grid points), data, models, dynamics, observables, theory (DMFT),
analysis (fits), io (artifacts), plots, stages (what each workflow stage runs), cli.
"""

__version__ = "0.1.0"
