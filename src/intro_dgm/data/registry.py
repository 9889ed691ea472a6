"""The data sets by name: :data:`DATASETS`, the names the CLI's ``--dataset`` and a run spec's
``dataset`` know, each with its loader, and :func:`load_dataset`, which loads one of them with
its options.
"""
from __future__ import annotations

from ..utils import Registry
from .digits import load_digits_split
from .fashion_mnist import FASHION_MNIST_OPTIONS, load_fashion_mnist_split
from .split import Split
from .toys import two_gaussians_split


def _no_options(name: str, options: dict) -> None:
    if options:
        raise ValueError(f"dataset {name!r} takes no options; got {sorted(options)}")


def _digits(**options) -> Split:
    _no_options("digits", options)
    return load_digits_split(binary=False)


def _digits_binary(**options) -> Split:
    _no_options("digits-binary", options)
    return load_digits_split(binary=True)


def _two_gaussians(**options) -> Split:
    unknown = sorted(set(options) - {"p"})
    if unknown:
        raise ValueError(f"dataset 'two-gaussians' takes the option p only; got {unknown}")
    return two_gaussians_split(**options)


def _fashion_mnist(**options) -> Split:
    unknown = sorted(set(options) - set(FASHION_MNIST_OPTIONS))
    if unknown:
        raise ValueError(f"dataset 'fashion-mnist' takes the options "
                         f"{', '.join(FASHION_MNIST_OPTIONS)}; got {unknown}")
    return load_fashion_mnist_split(**options)


#: The data sets by name -> loader ``(**options) -> Split`` (the CLI's ``--dataset``, a run
#: spec's ``dataset``); :func:`load_dataset` calls one.
DATASETS = Registry("dataset", {"digits": _digits, "digits-binary": _digits_binary,
                                "two-gaussians": _two_gaussians, "fashion-mnist": _fashion_mnist})


def load_dataset(name: str, **options) -> Split:
    """A data set by name (the CLI's ``--dataset``): one of :data:`DATASETS`.

    ``options`` go to the loader where it takes any (``two-gaussians``: ``p``, the weight of
    the left cluster; ``fashion-mnist``: the arguments of :func:`load_fashion_mnist_split`);
    a run spec records them in ``dataset_options``. A ``data_dir`` there becomes part of the
    run's id: to keep ids independent of where the files live, set ``$INTRO_DGM_DATA_DIR``
    (``intro-dgm --data-dir``) instead.
    """
    return DATASETS.lookup(name)(**options)
