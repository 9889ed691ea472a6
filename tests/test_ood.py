"""Out-of-distribution scores: the AUROC of a score from ranks, and the two complexity
measures of a binary image (boundary length, zlib-compressed size)."""
import numpy as np
import pytest
import torch

from intro_dgm.ood import auroc, boundary_length, compressed_bits


def test_auroc_is_the_probability_that_an_in_score_beats_an_out_score():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 300).round(1), rng.normal(0.0, 1.0, 200).round(1)  # with ties
    pairs = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    assert auroc(a, b) == pytest.approx(pairs, abs=1e-12)
    assert auroc(torch.tensor(a), torch.tensor(b)) == pytest.approx(pairs, abs=1e-12)
    assert auroc(b, a) == pytest.approx(1 - pairs, abs=1e-12)
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0 and auroc([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="scores_out must be a non-empty"):
        auroc([1.0], [])
    with pytest.raises(ValueError, match="scores_in must be a non-empty array of finite"):
        auroc([float("nan")], [1.0])


def test_boundary_length_counts_the_pixel_edges_between_ink_and_background():
    x = torch.zeros(4, 36)
    x[1].view(6, 6)[2, 2] = 1  # one pixel alone: 4 edges
    x[2].view(6, 6)[1:4, 1:4] = 1  # a 3 x 3 square: 12
    x[3].view(6, 6)[:, :3] = 1  # the left half: one straight cut of 6 edges (the border is no edge)
    assert boundary_length(x, (6, 6)).tolist() == [0, 4, 12, 6]
    assert boundary_length(1 - x, (6, 6)).tolist() == [0, 4, 12, 6]  # ink and background alike
    with pytest.raises(ValueError, match="image_shape must be"):
        boundary_length(x, (5, 6))
    with pytest.raises(ValueError, match="binary images"):
        boundary_length(x * 0.5 + 0.25, (6, 6))


def test_compressed_bits_are_smaller_for_simpler_images():
    g = torch.Generator().manual_seed(0)
    blank, noise = torch.zeros(1, 784), torch.bernoulli(torch.full((1, 784), 0.5), generator=g)
    bits = compressed_bits(torch.cat([blank, noise]))
    # a blank image is a header and one repeat; random pixels need their 784 bits and more
    assert bits.dtype == torch.int64 and bits[0] < 200 < 784 < bits[1]
    assert bits[0] % 8 == 0
    with pytest.raises(ValueError, match="binary images"):
        compressed_bits(torch.full((1, 8), 0.5))
