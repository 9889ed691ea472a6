"""The reader of IDX files, the format of MNIST and Fashion-MNIST (gzipped or not): it checks
the magic number, the dimensions and the length against what the caller expects, and every
error names the file and what was expected.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

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
