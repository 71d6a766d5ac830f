"""Source of the small user modules the model.kind torch tests write to a file (a user's
own code, outside the package): the perceptron as a module, a tanh MLP, and bad factories."""

MODULES = """
import torch
from torch import nn


class Perceptron(nn.Module):
    def __init__(self, N):
        super().__init__()
        self.w = nn.Parameter(torch.randn(N))
        self.N = N

    def forward(self, x):
        return x @ self.w / self.N ** 0.5


def perceptron(N=20):
    return Perceptron(N)


def mlp(inputs=20, hidden=8, outputs=1):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs)
    )


def not_a_module():
    return 3


def frozen(N=20):
    layer = nn.Linear(N, 1)
    layer.requires_grad_(False)
    return layer


def broken():
    raise RuntimeError("cannot build")
"""
