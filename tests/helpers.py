"""Shared by the tests: random, non-identity parameters."""
import torch


def randomise(module, std=0.3, seed=0):
    """Random, non-identity parameters (a flow at its zero initialisation is the identity,
    where a wrong log-determinant would go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g) + (p if p.dim() == 1 else 0))
    return module
