r"""Out-of-distribution scores: how well a score separates in-distribution images from
images from elsewhere (:func:`auroc`, with its standard error :func:`auroc_se` and its
definition over all pairs :func:`auroc_by_pairs`; :func:`detection_rate`, one point of the
ROC curve), and two measures of a binary image's complexity, :func:`boundary_length` and
:func:`compressed_bits`, which a likelihood mixes with how typical the image is; where a
Bernoulli decoder's cost lies (:func:`boundary_pixels`, :func:`bernoulli_cost_split`);
per-class means of a score (:func:`class_means`). Chapters: the Fashion-MNIST results and
what a Fashion-MNIST model thinks of handwritten digits.
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


def _scores(values, name: str):
    import numpy as np

    v = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values,
                   dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a non-empty array of finite scores")
    return v


def auroc_by_pairs(scores_in, scores_out, chunk: int = 500) -> float:
    r"""The AUROC from its definition, every pair once:
    :math:`\frac{1}{n_\mathrm{in} n_\mathrm{out}}\sum_{i,j}(\mathbb 1[s_i > s_j]
    + \tfrac12 \mathbb 1[s_i = s_j])`, ``chunk`` outside scores at a time (memory
    :math:`n_\mathrm{in} \cdot` ``chunk``). The check of :func:`auroc`."""
    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    wins = 0.0
    for j in range(0, b.size, chunk):
        block = b[None, j:j + chunk]
        wins += (a[:, None] > block).sum() + 0.5 * (a[:, None] == block).sum()
    return float(wins / (a.size * b.size))


def auroc_se(scores_in, scores_out) -> float:
    r"""Standard error of :func:`auroc` over the sampling of both sets of images (DeLong et
    al., 1988): with :math:`V_i` the share of outside scores that in-distribution example
    :math:`i` beats (ties half) and :math:`W_j` the share of in-distribution scores that
    beat outside example :math:`j`, both averaging to the AUROC,
    :math:`\mathrm{se}^2 = \mathrm{var}(V)/n_\mathrm{in} + \mathrm{var}(W)/n_\mathrm{out}`.
    From ranks, :math:`O(n \log n)`."""
    import numpy as np
    from scipy.stats import rankdata

    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    if a.size < 2 or b.size < 2:
        raise ValueError("auroc_se needs at least two scores in each set")
    both = rankdata(np.concatenate([a, b]))
    # rank among both sets minus rank within its own set: how many of the other set it beats
    v = (both[:a.size] - rankdata(a)) / b.size
    w = 1.0 - (both[a.size:] - rankdata(b)) / a.size
    return float(np.sqrt(v.var(ddof=1) / a.size + w.var(ddof=1) / b.size))


def detection_rate(scores_in, scores_out, false_positive_rate: float = 0.05) -> float:
    """The share of outside examples a threshold flags when it is set to flag
    ``false_positive_rate`` of the in-distribution ones (the in-set's quantile of that
    level; a score below it is flagged): the true positive rate at one point of the ROC
    curve. At 0.5 the threshold is the in-set's median."""
    import numpy as np

    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate!r}")
    return float((b < np.quantile(a, false_positive_rate)).mean())


def class_means(values, labels, num_classes: int = 10):
    """The mean of ``values`` over the examples of each class ``0 .. num_classes - 1``
    (NumPy ``(num_classes,)``; an error for a class without examples)."""
    import numpy as np

    v, y = _scores(values, "values"), np.asarray(labels).ravel()
    if y.shape != v.shape:
        raise ValueError(f"labels must have one entry per value ({v.size}), got {y.size}")
    counts = np.bincount(y, minlength=num_classes)
    if counts.size != num_classes or (counts == 0).any():
        raise ValueError(f"labels must be 0..{num_classes - 1}, each at least once")
    return np.bincount(y, weights=v, minlength=num_classes) / counts


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


def boundary_pixels(x, image_shape: tuple[int, int]):
    """Per binary image (rows of ``x``, NumPy or torch), which pixels have a horizontal or
    vertical neighbour of the other colour: the pixels on either side of the boundary
    between ink and background. Returns a NumPy bool array of ``x``'s shape."""
    import numpy as np

    v = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)
    if v.ndim != 2 or len(image_shape) != 2 or image_shape[0] * image_shape[1] != v.shape[1]:
        raise ValueError(f"x must be (N, height * width) with image_shape (height, width); "
                         f"got x {v.shape} and image_shape {image_shape}")
    if not ((v == 0) | (v == 1)).all():
        raise ValueError("x must be binary images (0/1 pixels)")
    img = v.reshape(-1, *image_shape).astype(bool)
    edge = np.zeros_like(img)
    for axis in (1, 2):
        differs = np.diff(img, axis=axis)
        before = [slice(None)] * 3
        after = [slice(None)] * 3
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        edge[tuple(before)] |= differs  # the pixel before a change of colour
        edge[tuple(after)] |= differs   # and the one after it
    return edge.reshape(v.shape)


def bernoulli_cost_split(x, probs, image_shape: tuple[int, int],
                         eps: float = 1e-6) -> tuple[float, float, float]:
    r"""Where a Bernoulli decoder's cost :math:`-[x_d\ln\pi_d + (1 - x_d)\ln(1 - \pi_d)]`
    falls, for binary images ``x`` and decoder means ``probs`` of the same shape: (the mean
    cost per image in nats, the share of it on :func:`boundary_pixels`, the share of pixels
    that are boundary pixels). ``probs`` is clipped to [eps, 1 - eps]: a stored mean of
    exactly 0 or 1 (float32 rounding) would give log 0."""
    import numpy as np

    v = np.asarray(x, dtype=np.float64)
    pi = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    if pi.shape != v.shape:
        raise ValueError(f"probs must have x's shape {v.shape}, got {pi.shape}")
    edge = boundary_pixels(v, image_shape)
    cost = -(v * np.log(pi) + (1 - v) * np.log1p(-pi))
    return float(cost.sum(1).mean()), float(cost[edge].sum() / cost.sum()), float(edge.mean())
