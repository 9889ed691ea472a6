"""scikit-learn's 8x8 Digits, embedded in scikit-learn (no download): the images as a
:class:`~intro_dgm.data.split.Split` with the book's companion code's split (train = first
1000 images, validation = next 350, test = last 447, so our numbers can be compared with it),
values the integers 0..16 (or thresholded to 0/1), and their class labels.
"""
from __future__ import annotations

import numpy as np
import torch

from ..utils import check_bool
from .split import Split

#: Shape of a Digits image (8x8 pixels).
DIGITS_SHAPE = (8, 8)
#: Number of values of a Digits pixel (the integers 0..16).
DIGITS_NUM_VALS = 17
#: Boundaries of the companion code's split of the 1797 images.
DIGITS_SPLIT = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}


def load_digits_split(binary: bool = False) -> Split:
    """Digits with the companion code's split, as float32 tensors ``(N, 64)``.

    Args:
        binary: threshold the 0..16 values at 8 (``x >= 8`` -> 1) for a Bernoulli decoder.
    Returns:
        A :class:`Split`; ``num_vals`` is 17 (or 2 when ``binary``).
    """
    check_bool(binary, "binary")
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
