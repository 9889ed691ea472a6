r"""Out-of-distribution scores: how well a score separates in-distribution images from
images from elsewhere (:func:`auroc`), and two measures of a binary image's complexity,
:func:`boundary_length` and :func:`compressed_bits`, which a likelihood mixes with how
typical the image is (chapter: what a Fashion-MNIST model thinks of handwritten digits).
"""
from __future__ import annotations

import torch

from .utils import check_tensor


def auroc(scores_in, scores_out) -> float:
    r"""Area under the ROC curve of a score meant to be higher in-distribution:
    :math:`P(s_\mathrm{in} > s_\mathrm{out}) + \tfrac12 P(s_\mathrm{in} = s_\mathrm{out})`
    for one score drawn from each set (1: every in-distribution example scores higher; 0.5:
    no better than a coin; below 0.5: the score prefers the other set).

    Computed from ranks (the Mann-Whitney U statistic, ties given their mean rank) in
    :math:`O(n \log n)`, rather than from all :math:`n_\mathrm{in} n_\mathrm{out}` pairs.
    """
    import numpy as np
    from scipy.stats import rankdata

    a = np.asarray(scores_in.cpu() if isinstance(scores_in, torch.Tensor) else scores_in,
                   dtype=np.float64).ravel()
    b = np.asarray(scores_out.cpu() if isinstance(scores_out, torch.Tensor) else scores_out,
                   dtype=np.float64).ravel()
    for name, v in (("scores_in", a), ("scores_out", b)):
        if v.size == 0 or not np.isfinite(v).all():
            raise ValueError(f"{name} must be a non-empty array of finite scores")
    ranks = rankdata(np.concatenate([a, b]))  # 1-based, ties averaged
    u = ranks[:a.size].sum() - a.size * (a.size + 1) / 2  # pairs with s_in > s_out (+ ties/2)
    return float(u / (a.size * b.size))


def boundary_length(x: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Per binary image (rows of ``x``), the number of horizontally or vertically adjacent
    pixel pairs that differ: the length of the boundary between ink and background, in
    pixel edges (a single pixel of ink alone has 4; a k x k square away from the border 4k).
    Returns int64 ``(N,)``."""
    check_tensor(x, "x", ndim=2, floating=False)
    if len(image_shape) != 2 or image_shape[0] * image_shape[1] != x.shape[1]:
        raise ValueError(f"image_shape must be (height, width) with height * width = "
                         f"{x.shape[1]} (the columns of x), got {image_shape}")
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("x must be binary images (0/1 pixels)")
    img = x.reshape(-1, *image_shape).to(torch.int64)
    return ((img[:, 1:, :] != img[:, :-1, :]).sum((1, 2))
            + (img[:, :, 1:] != img[:, :, :-1]).sum((1, 2)))


def compressed_bits(x: torch.Tensor) -> torch.Tensor:
    """Per binary image (rows of ``x``), its size in bits compressed by zlib at level 9, one
    byte per pixel (as an 8-bit image file would hold it; packing 8 pixels to a byte would
    break the image's rows, 28 pixels = 3.5 bytes, out of step with the bytes and hide their
    repeats from zlib): a generic compressor's measure of the image's complexity (Serra et
    al., 2020). A code of ``L`` bits is a probability ``2**-L``, so this is a generic density
    model's ``-log2 p(x)``. Returns int64 ``(N,)``."""
    import zlib

    import numpy as np

    check_tensor(x, "x", ndim=2, floating=False)
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("x must be binary images (0/1 pixels)")
    pixels = x.detach().cpu().numpy().astype(np.uint8)
    return torch.tensor([8 * len(zlib.compress(row.tobytes(), 9)) for row in pixels])
