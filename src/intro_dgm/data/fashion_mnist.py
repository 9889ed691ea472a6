"""Fashion-MNIST (60,000 / 10,000 images of 28x28), binarised for a Bernoulli decoder: where
its four IDX files are found (a ``data_dir``, else ``$INTRO_DGM_DATA_DIR``, else Debian's
``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist/``, else torchvision's
download when torchvision is installed -- an optional import, e.g. on Colab, never a
dependency), the train/validation split, the binarisation of the pixels, and the labels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..utils import check_bool, check_int
from .idx import read_idx
from .split import Split

#: Shape of a Fashion-MNIST (and MNIST) image.
FASHION_MNIST_SHAPE = (28, 28)
#: The four IDX files of Fashion-MNIST (each may also be gzipped: the name + ``.gz``).
FASHION_MNIST_FILES = {"train_images": "train-images-idx3-ubyte",
                       "train_labels": "train-labels-idx1-ubyte",
                       "test_images": "t10k-images-idx3-ubyte",
                       "test_labels": "t10k-labels-idx1-ubyte"}
#: Where Debian's package ``dataset-fashion-mnist`` installs the four files (gzipped).
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming a directory that holds the files (``intro-dgm --data-dir``).
DATA_DIR_ENV = "INTRO_DGM_DATA_DIR"
#: Binarisations of :func:`binarise_pixels`.
BINARISATIONS = ("threshold", "dynamic")
#: Seed of the one Bernoulli draw of the test images under ``binarise="dynamic"``: the test
#: set is the same whatever the split's seed.
FASHION_MNIST_TEST_SEED = 2019

#: The options of ``load_dataset("fashion-mnist", ...)`` (a run spec's ``dataset_options``).
FASHION_MNIST_OPTIONS = ("data_dir", "binarise", "val_size", "seed", "download")

_HOW_TO_GET = ("get it with 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu: "
               f"installs {FASHION_MNIST_DEBIAN_DIR}/), or pass --data-dir DIR (data_dir=DIR, "
               f"or set ${DATA_DIR_ENV}) for a directory holding the four IDX files, or "
               "'pip install torchvision' to download them (e.g. on Colab)")


def _idx_file(directory: Path, name: str) -> Path | None:
    """``directory/name``, else ``directory/name.gz``, else None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _fashion_mnist_files(directory: Path) -> tuple[dict[str, Path] | None, str | None]:
    """The four files in ``directory``, its ``fashion-mnist/`` subdirectory or torchvision's
    layout ``FashionMNIST/raw/`` (the first with all four); else None and the first missing
    file of the most complete candidate, as ``dir/name[.gz]``."""
    best = None
    for d in (directory, directory / "fashion-mnist", directory / "FashionMNIST" / "raw"):
        found = {k: _idx_file(d, name) for k, name in FASHION_MNIST_FILES.items()}
        if all(found.values()):
            return found, None
        count = sum(v is not None for v in found.values())
        if best is None or count > best[0]:
            missing = next(name for k, name in FASHION_MNIST_FILES.items() if found[k] is None)
            best = (count, f"{d / missing}[.gz]")
    return None, best[1]


def _torchvision_download(root: Path) -> bool:
    """Download Fashion-MNIST with torchvision into ``root/FashionMNIST/raw``; False when
    torchvision is not installed (it is an optional import, never a dependency)."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        return False
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except Exception as exc:  # no network, a server error, ...: one line, the cause named
        raise FileNotFoundError(f"Fashion-MNIST: torchvision could not download it into "
                                f"{root} ({type(exc).__name__}: {exc}); {_HOW_TO_GET}") from None
    return True


def _default_download_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "intro_dgm"


def find_fashion_mnist(data_dir=None, download: bool = True) -> dict[str, Path]:
    """Paths of the four Fashion-MNIST IDX files (see :data:`FASHION_MNIST_FILES`).

    Looked for, in order: in ``data_dir``; else in ``$INTRO_DGM_DATA_DIR``; else in
    :data:`FASHION_MNIST_DEBIAN_DIR` (Debian's ``dataset-fashion-mnist``). A directory
    may hold the files itself, in ``fashion-mnist/`` or in torchvision's
    ``FashionMNIST/raw/``, each plain or gzipped. When they are not there and ``download``
    is true and torchvision is installed, torchvision downloads them (into the directory
    given, else ``~/.cache/intro_dgm``).

    Raises:
        FileNotFoundError: one line naming the missing file and how to get it.
    """
    check_bool(download, "download")
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    directory = Path(explicit).expanduser() if explicit is not None else FASHION_MNIST_DEBIAN_DIR
    files, missing = _fashion_mnist_files(directory)
    if files is not None:
        return files
    root = directory if explicit is not None else _default_download_dir()
    if explicit is None:  # an earlier download
        files, _ = _fashion_mnist_files(root)
        if files is not None:
            return files
    if download:
        if _torchvision_download(root):
            files, missing = _fashion_mnist_files(root)
            if files is not None:
                return files
    where = ("data_dir" if data_dir is not None else f"${DATA_DIR_ENV}" if explicit is not None
             else "Debian's location")
    raise FileNotFoundError(f"Fashion-MNIST file not found: {missing} ({where}); {_HOW_TO_GET}")


def load_fashion_mnist_arrays(data_dir=None, download: bool = True) -> dict[str, np.ndarray]:
    """The raw Fashion-MNIST arrays: ``train_images`` ``(60000, 28, 28)`` and ``test_images``
    ``(10000, 28, 28)`` uint8 intensities 0..255, ``train_labels`` / ``test_labels`` uint8
    classes 0..9, in the files' order (files found by :func:`find_fashion_mnist`)."""
    files = find_fashion_mnist(data_dir, download)
    out = {}
    for part in ("train", "test"):
        images = read_idx(files[f"{part}_images"], (None, *FASHION_MNIST_SHAPE), np.uint8)
        labels = read_idx(files[f"{part}_labels"], (None,), np.uint8)
        if len(labels) != len(images):
            raise ValueError(f"{files[f'{part}_labels']}: {len(labels)} labels for the "
                             f"{len(images)} images of {files[f'{part}_images']}; expected "
                             "one label per image")
        out[f"{part}_images"], out[f"{part}_labels"] = images, labels
    return out


def binarise_pixels(images: np.ndarray, binarise: str = "threshold",
                    rng: np.random.RandomState | None = None) -> torch.Tensor:
    """Binary float32 pixels ``(N, D)`` from 0..255 intensities ``(N, ...)``.

    Args:
        images: uint8 intensities.
        binarise: ``"threshold"`` -- ``x > 127`` -> 1 (intensity above one half), the same
            every time; or ``"dynamic"`` -- each pixel an independent Bernoulli draw with
            probability ``intensity / 255`` (``u < intensity / 255`` for ``u`` uniform from
            ``rng``; 0 stays 0, 255 stays 1).
        rng: the generator of the draws (``"dynamic"`` only; required there).
    """
    if binarise not in BINARISATIONS:
        raise ValueError(f"binarise must be one of {', '.join(BINARISATIONS)}; got {binarise!r}")
    flat = np.asarray(images).reshape(len(images), -1)
    if binarise == "threshold":
        return torch.from_numpy((flat > 127).astype(np.float32))
    if rng is None:
        raise ValueError("binarise='dynamic' draws pixels at random: pass rng, a seeded "
                         "np.random.RandomState")
    out = np.empty(flat.shape, np.float32)
    for i in range(0, len(flat), 5000):  # 5,000 rows of float64 uniforms at a time (31 MB)
        block = flat[i:i + 5000]
        out[i:i + 5000] = rng.random_sample(block.shape) * 255.0 < block
    return torch.from_numpy(out)


def fashion_mnist_split_indices(n: int, val_size: int, seed: int
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a random split of ``n`` training images, each sorted:
    ``val_size`` images drawn without replacement by ``np.random.RandomState(seed)``'s
    permutation (NumPy's legacy generator, whose stream is frozen across versions), the rest
    train. Disjoint, and the same for the same seed."""
    check_int(n, "n", minimum=2)
    check_int(val_size, "val_size", minimum=1)
    if val_size >= n:
        raise ValueError(f"val_size must leave training images: at most {n - 1} of {n}, "
                         f"got {val_size}")
    perm = np.random.RandomState(check_int(seed, "seed", minimum=0)).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def load_fashion_mnist_split(data_dir=None, binarise: str = "threshold",
                             val_size: int = 10_000, seed: int = 0,
                             download: bool = True) -> Split:
    """Fashion-MNIST, binarised for a Bernoulli decoder: float32 tensors ``(N, 784)`` of
    0/1; by default 50,000 train / 10,000 validation / 10,000 test.

    The split: the 10,000 images of the ``t10k`` files are the test set, always all of them
    in the file's order. ``val_size`` of the 60,000 ``train`` images, chosen by
    :func:`fashion_mnist_split_indices` with ``seed``, are the validation set (early
    stopping); they are kept out of the training set, which is the rest. The split does not
    depend on a run's seed, so runs with different seeds see the same data.

    Binarisation (a Bernoulli decoder models 0/1 pixels):

    * ``"threshold"`` (the default): a pixel is 1 when its intensity is above 127 (of 255).
      Deterministic, so every run, every seed and every machine see the same training and
      test sets, and a row of the results store reproduces from its spec; test
      log-likelihoods are comparable between models without a sampling spread.
    * ``"dynamic"``: each pixel is a Bernoulli draw with probability intensity / 255 (the
      stochastic binarisation of Salakhutdinov & Murray 2008, which the VampPrior paper
      uses on MNIST). Drawn once here, when the data set is loaded: the training and
      validation images from ``np.random.RandomState(seed)`` (after the split's
      permutation, from the same stream), the test images from the fixed seed
      :data:`FASHION_MNIST_TEST_SEED`, so the test set is the same for every ``seed``. A new
      draw at every epoch, as in the paper, needs the training loop to resample; a loop can
      call :func:`binarise_pixels` on :func:`load_fashion_mnist_arrays` for that.

    Numbers from the two binarisations are not comparable (thresholding gives cleaner
    images and lower NLLs), nor either with the paper's MNIST numbers.

    Args:
        data_dir: a directory holding the four IDX files (see :func:`find_fashion_mnist` for
            where they are looked for without it).
        binarise: ``"threshold"`` or ``"dynamic"`` (see above).
        val_size: validation images taken from the 60,000 training images.
        seed: seed of the train/validation split (and of the ``"dynamic"`` draws).
        download: let torchvision download the files when it is installed and they are not
            found.
    Returns:
        A :class:`Split` named ``"fashion-mnist"``, ``num_vals=2``, ``image_shape=(28, 28)``.
    Raises:
        FileNotFoundError: the files are not found (one line saying how to get them).
        ValueError: a damaged file (naming it), or a bad argument.
    """
    if binarise not in BINARISATIONS:
        raise ValueError(f"binarise must be one of {', '.join(BINARISATIONS)}; got {binarise!r}")
    arrays = load_fashion_mnist_arrays(data_dir, download)
    images = arrays["train_images"]
    train_idx, val_idx = fashion_mnist_split_indices(len(images), val_size, seed)
    rng = np.random.RandomState(seed)
    rng.permutation(len(images))  # the split's draw: the pixels' draws come after it
    x = binarise_pixels(images, binarise, rng if binarise == "dynamic" else None)
    test_rng = np.random.RandomState(FASHION_MNIST_TEST_SEED) if binarise == "dynamic" else None
    test = binarise_pixels(arrays["test_images"], binarise, test_rng)
    return Split(train=x[torch.from_numpy(train_idx)], val=x[torch.from_numpy(val_idx)],
                 test=test, num_vals=2, image_shape=FASHION_MNIST_SHAPE, name="fashion-mnist")


def load_fashion_mnist_labels(data_dir=None, val_size: int = 10_000, seed: int = 0,
                              download: bool = True) -> dict[str, torch.Tensor]:
    """The class (0..9) of every image of :func:`load_fashion_mnist_split` with the same
    ``val_size`` and ``seed``: ``{"train", "val", "test"}`` int64 tensors. The models never
    see them; they are for scoring samples and for figures."""
    arrays = load_fashion_mnist_arrays(data_dir, download)
    labels = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    train_idx, val_idx = fashion_mnist_split_indices(len(labels), val_size, seed)
    return {"train": labels[torch.from_numpy(train_idx)], "val": labels[torch.from_numpy(val_idx)],
            "test": torch.from_numpy(arrays["test_labels"].astype(np.int64))}
