"""Data sets that work offline, and a fast in-memory batch loader; every public name is
importable from here. Modules, bottom to top: ``split`` (:class:`Split`, the container of a
data set), ``idx`` (the IDX reader), ``loader`` (:class:`TensorLoader`); the data sets
``digits`` (scikit-learn's 8x8 Digits, no download, the companion code's split),
``fashion_mnist`` (Fashion-MNIST from local IDX files, binarised), ``mnist`` (5,000 MNIST
digits, the out-of-distribution set) and ``toys`` (small 2-D data sets); ``registry``
(:data:`DATASETS` and :func:`load_dataset`, the data sets by name).
"""
from .digits import (DIGITS_NUM_VALS, DIGITS_SHAPE, DIGITS_SPLIT, load_digits_labels,
                     load_digits_split)
from .fashion_mnist import (BINARISATIONS, DATA_DIR_ENV, FASHION_MNIST_DEBIAN_DIR,
                            FASHION_MNIST_FILES, FASHION_MNIST_OPTIONS, FASHION_MNIST_SHAPE,
                            FASHION_MNIST_TEST_SEED, binarise_pixels, fashion_mnist_split_indices,
                            find_fashion_mnist, load_fashion_mnist_arrays,
                            load_fashion_mnist_labels, load_fashion_mnist_split)
from .idx import IDX_TYPES, read_idx
from .loader import TensorLoader
from .mnist import load_mnist_digits
from .registry import DATASETS, load_dataset
from .split import LIKELIHOODS, DataFields, Split, check_likelihood, likelihood_for
from .toys import TOY_2D, toy_2d, two_gaussians_split

__all__ = ["BINARISATIONS", "DATASETS", "DATA_DIR_ENV", "DIGITS_NUM_VALS", "DIGITS_SHAPE",
           "DIGITS_SPLIT", "FASHION_MNIST_DEBIAN_DIR", "FASHION_MNIST_FILES",
           "FASHION_MNIST_OPTIONS", "FASHION_MNIST_SHAPE", "FASHION_MNIST_TEST_SEED", "IDX_TYPES",
           "LIKELIHOODS", "DataFields", "check_likelihood", "likelihood_for",
           "Split", "TOY_2D", "TensorLoader", "binarise_pixels", "fashion_mnist_split_indices",
           "find_fashion_mnist", "load_dataset", "load_digits_labels", "load_digits_split",
           "load_fashion_mnist_arrays", "load_fashion_mnist_labels", "load_fashion_mnist_split",
           "load_mnist_digits", "read_idx", "toy_2d", "two_gaussians_split"]
