"""Network builders shared by the models."""
from __future__ import annotations

import math
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


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    r"""The transformer's position code for integer steps ``t`` ``(B,)``: ``(B, dim)`` with
    :math:`[\sin(t\,\omega_i), \cos(t\,\omega_i)]`, :math:`\omega_i = P^{-i/(dim/2)}`,
    frequencies spread geometrically from 1 to :math:`1/P`, so that one network can tell
    nearby steps apart (high frequencies) and see where in the chain it is (low ones).
    Used by the diffusion model's shared reverse network."""
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
    half = dim // 2
    omega = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angle = t.to(omega.dtype)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
