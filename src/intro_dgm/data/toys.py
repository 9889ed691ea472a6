"""Small 2-D toy data sets (two Gaussians, a ring of eight Gaussians, moons) drawn from a
seeded generator, and the two-Gaussians study's train / validation / test split.
"""
from __future__ import annotations

import numpy as np
import torch

from ..utils import check_int
from .split import Split

TOY_2D = ("two_gaussians", "eight_gaussians", "moons")


def toy_2d(name: str, n: int, seed: int = 0, p: float = 0.5, separation: float = 4.0
           ) -> torch.Tensor:
    """Samples ``(n, 2)`` from a small 2-D data set.

    Args:
        name: ``"two_gaussians"`` (means at ``(+-separation/2, 0)``, identity covariance,
            the first component with probability ``p``), ``"eight_gaussians"`` (a ring of
            radius 4, std 0.3) or ``"moons"`` (scikit-learn's two moons, scaled by 2).
        n: number of points.
        seed: seed of the generator, so the same call gives the same points.
    """
    check_int(n, "n", minimum=1)
    if name not in TOY_2D:
        raise ValueError(f"name must be one of {', '.join(TOY_2D)}; got {name!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    g = torch.Generator().manual_seed(seed)
    if name == "two_gaussians":
        first = torch.rand(n, generator=g) < p
        means = torch.tensor([[-separation / 2, 0.0], [separation / 2, 0.0]])
        return means[(~first).long()] + torch.randn(n, 2, generator=g)
    if name == "eight_gaussians":
        angle = torch.randint(0, 8, (n,), generator=g).float() * (2 * np.pi / 8)
        centres = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        return centres + 0.3 * torch.randn(n, 2, generator=g)
    from sklearn.datasets import make_moons
    x, _ = make_moons(n_samples=n, noise=0.05, random_state=seed)
    return 2.0 * torch.from_numpy(x.astype(np.float32))


def two_gaussians_split(p: float = 0.8) -> Split:
    """The two-Gaussians toy study's data (chapter: two Gaussians): 10,000 / 2,000 / 5,000
    points of :func:`toy_2d` ``("two_gaussians", p=p)`` drawn with seeds 0 / 1 / 2."""
    return Split(train=toy_2d("two_gaussians", 10_000, seed=0, p=p),
                 val=toy_2d("two_gaussians", 2_000, seed=1, p=p),
                 test=toy_2d("two_gaussians", 5_000, seed=2, p=p),
                 num_vals=0, image_shape=(1, 2), name="two-gaussians")
