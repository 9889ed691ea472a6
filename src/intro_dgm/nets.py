"""Network builders shared by the models."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int,
        activation: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden[0] -> ... -> out_dim``.

    The output layer is linear: the model decides what its outputs mean (means,
    log-variances, logits).
    """
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


class Rescale(nn.Module):
    """Maps integer pixel values ``0..num_vals-1`` to ``[-1, 1]`` before an encoder.

    Networks train faster on centred inputs of unit scale than on raw 0..16 counts; the
    likelihood still sees the original integers, so this changes no density.
    """

    def __init__(self, num_vals: int):
        super().__init__()
        self.num_vals = num_vals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x / (self.num_vals - 1) - 1.0

    def extra_repr(self) -> str:
        return f"num_vals={self.num_vals}"
