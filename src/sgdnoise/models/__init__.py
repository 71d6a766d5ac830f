"""Trained models: the networks of docs/physics.md B2 and the alpha-trick predictor."""

from sgdnoise.models.networks import (
    NETWORK_KINDS,
    NormalisedActivation,
    activation_scale,
    alpha_predictor,
    draw_parameters,
    initial_parameters,
    make_network,
    network_function,
    replica_outputs,
)

__all__ = [
    "NETWORK_KINDS",
    "NormalisedActivation",
    "activation_scale",
    "alpha_predictor",
    "draw_parameters",
    "initial_parameters",
    "make_network",
    "network_function",
    "replica_outputs",
]
