"""Out-of-distribution scores: the AUROC of a score from ranks, its standard error and one
point of its ROC curve; the two complexity measures of a binary image (boundary length,
zlib-compressed size); where a Bernoulli decoder's cost falls."""
import numpy as np
import pytest
import torch

from intro_dgm.ood import (auroc, auroc_by_pairs, auroc_se, bernoulli_cost_split,
                           boundary_length, boundary_pixels, class_means, compressed_bits,
                           detection_rate)


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


def test_auroc_by_pairs_is_the_definition_and_auroc_se_the_sampling_spread():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, 300).round(1), rng.normal(0.0, 1.0, 200).round(1)
    assert auroc_by_pairs(a, b, chunk=7) == pytest.approx(auroc(a, b), abs=1e-12)
    # the se (averaged over draws: one draw's estimate is itself noisy) against the spread
    # of the AUROC over 2,000 fresh draws of both sets
    draws = [(rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)) for _ in range(2000)]
    spread = np.std([auroc(x, y) for x, y in draws])
    assert np.mean([auroc_se(x, y) for x, y in draws[:200]]) == pytest.approx(spread, rel=0.05)
    # a perfect separation has no sampling spread
    assert auroc_se([2.0, 3.0, 4.0], [0.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="at least two scores"):
        auroc_se([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        auroc_by_pairs(a, b, chunk=0)


def test_detection_rate_and_class_means():
    inside = np.arange(100.0)  # its 5 % quantile is 4.95
    outside = np.array([0.0, 4.0, 5.0, 50.0])
    assert detection_rate(inside, outside, 0.05) == 0.5
    assert detection_rate(inside, outside, 0.5) == 0.75
    with pytest.raises(ValueError, match="false_positive_rate must be in"):
        detection_rate(inside, outside, 1.0)
    assert class_means([1.0, 2.0, 3.0, 5.0], [0, 1, 0, 1], 2).tolist() == [2.0, 3.5]
    with pytest.raises(ValueError, match="each at least once"):
        class_means([1.0, 2.0], [0, 0], 2)


def test_boundary_pixels_are_the_two_sides_of_every_counted_edge():
    g = torch.Generator().manual_seed(5)
    x = torch.bernoulli(torch.full((6, 64), 0.3), generator=g)
    edge = boundary_pixels(x, (8, 8))
    img = x.view(-1, 8, 8).numpy()
    # a pixel is on the boundary exactly when a 4-neighbour has the other colour
    for n, i, j in [(0, 0, 0), (1, 3, 4), (5, 7, 7), (2, 4, 0)]:
        nb = [img[n, p, q] for p, q in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
              if 0 <= p < 8 and 0 <= q < 8]
        assert edge.reshape(-1, 8, 8)[n, i, j] == any(v != img[n, i, j] for v in nb)
    assert not boundary_pixels(torch.zeros(1, 64), (8, 8)).any()


def test_bernoulli_cost_split_adds_up_and_puts_uncertainty_on_the_boundary():
    x = np.zeros((1, 36))
    x[0].reshape(6, 6)[1:4, 1:4] = 1  # a square: its outline and the ring around it
    edge = boundary_pixels(x, (6, 6))
    pi = np.where(edge, 0.5, np.where(x == 1, 0.99, 0.01))  # unsure only at the boundary
    total, share, pixels = bernoulli_cost_split(x, pi, (6, 6))
    assert pixels == edge.mean() and total == pytest.approx(
        edge.sum() * np.log(2) + (~edge).sum() * -np.log(0.99))
    assert share == pytest.approx(edge.sum() * np.log(2) / total)
    with pytest.raises(ValueError, match="probs must have x's shape"):
        bernoulli_cost_split(x, pi[:, :10], (6, 6))
