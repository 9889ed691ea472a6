"""Data sets that work offline, and a fast in-memory batch loader.

* :func:`load_digits_split` -- scikit-learn's 8x8 Digits (embedded in scikit-learn, no
  download), values are the integers 0..16. The split is the one used by the book's
  companion code (train = first 1000 images, validation = next 350, test = last 447), so
  our numbers can be compared with it.
* :func:`toy_2d` -- small 2-D data sets (two Gaussians, a ring of eight Gaussians, moons).
* :class:`TensorLoader` -- batches from a tensor in memory. For data this small a
  ``torch.utils.data.DataLoader`` spends most of its time collating single rows; slicing a
  shuffled tensor is several times faster and gives the same batches for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .utils import check_int

#: Shape of a Digits image (8x8 pixels).
DIGITS_SHAPE = (8, 8)
#: Number of values of a Digits pixel (the integers 0..16).
DIGITS_NUM_VALS = 17
#: Boundaries of the companion code's split of the 1797 images.
DIGITS_SPLIT = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}

#: The names :func:`load_dataset` knows (the CLI's ``--dataset``, a run spec's ``dataset``).
DATASETS = ("digits", "digits-binary", "two-gaussians")


@dataclass
class Split:
    """Train / validation / test tensors of one data set, with what a model needs to know."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    num_vals: int  #: values a pixel takes (17 for Digits, 2 binary); 0 for real-valued data
    image_shape: tuple[int, int]
    name: str

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def load_digits_split(binary: bool = False) -> Split:
    """Digits with the companion code's split, as float32 tensors ``(N, 64)``.

    Args:
        binary: threshold the 0..16 values at 8 (``x >= 8`` -> 1) for a Bernoulli decoder.
    Returns:
        A :class:`Split`; ``num_vals`` is 17 (or 2 when ``binary``).
    """
    from sklearn.datasets import load_digits  # embedded data: no download

    x = torch.from_numpy(load_digits().data.astype(np.float32))
    num_vals = DIGITS_NUM_VALS
    if binary:
        x = (x >= 8).float()
        num_vals = 2
    parts = {k: x[a:b].clone() for k, (a, b) in DIGITS_SPLIT.items()}
    return Split(**parts, num_vals=num_vals, image_shape=DIGITS_SHAPE,
                 name="digits-binary" if binary else "digits")


def load_digits_labels() -> dict[str, torch.Tensor]:
    """The class (0..9) of every Digits image, with the split of :func:`load_digits_split`:
    ``{"train": (1000,), "val": (350,), "test": (447,)}`` int64 tensors. The models never
    see them; the book uses them to score generated images (``evaluation.SampleScorer``)."""
    from sklearn.datasets import load_digits

    y = torch.from_numpy(load_digits().target.astype(np.int64))
    return {k: y[a:b].clone() for k, (a, b) in DIGITS_SPLIT.items()}


def two_gaussians_split(p: float = 0.8) -> Split:
    """The two-Gaussians toy study's data (chapter: two Gaussians): 10,000 / 2,000 / 5,000
    points of :func:`toy_2d` ``("two_gaussians", p=p)`` drawn with seeds 0 / 1 / 2."""
    return Split(train=toy_2d("two_gaussians", 10_000, seed=0, p=p),
                 val=toy_2d("two_gaussians", 2_000, seed=1, p=p),
                 test=toy_2d("two_gaussians", 5_000, seed=2, p=p),
                 num_vals=0, image_shape=(1, 2), name="two-gaussians")


def load_dataset(name: str, **options) -> Split:
    """A data set by name (the CLI's ``--dataset``): one of :data:`DATASETS`.

    ``options`` go to the loader where it takes any (``two-gaussians``: ``p``, the weight of
    the left cluster); a run spec records them in ``dataset_options``.
    """
    if name in ("digits", "digits-binary"):
        if options:
            raise ValueError(f"dataset {name!r} takes no options; got {sorted(options)}")
        return load_digits_split(binary=name == "digits-binary")
    if name == "two-gaussians":
        unknown = sorted(set(options) - {"p"})
        if unknown:
            raise ValueError(f"dataset 'two-gaussians' takes the option p only; got {unknown}")
        return two_gaussians_split(**options)
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")


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


class TensorLoader:
    """Iterate over ``data`` in mini-batches, reshuffled every epoch by its own generator.

    Args:
        data: ``(N, ...)`` tensor.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        seed: seed of the loader's generator (same seed -> same order of batches).
    """

    def __init__(self, data: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                 seed: int = 0):
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data must have at least one row, got shape {tuple(data.shape)}")
        self.data = data
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.data.shape[0] // self.batch_size)

    def __iter__(self):
        n = self.data.shape[0]
        if self.shuffle:
            data = self.data[torch.randperm(n, generator=self.generator)]
        else:
            data = self.data
        for start in range(0, n, self.batch_size):
            yield data[start:start + self.batch_size]
