"""Evaluation of any model: the single-sample ELBO, the importance-weighted bound, active
units, bits per dimension, the sample scorer; every function keeps the model's mode."""
import math

import pytest
import torch
from torch import nn

from intro_dgm.data import load_digits_labels
from intro_dgm.decoders import GaussianDecoder
from intro_dgm.evaluation import (SampleScorer, active_units, bits_per_dim, elbo,
                                  iwae_log_likelihood)
from intro_dgm.models import PPCA, VAE, GaussianEncoder, VAEConfig, build_vae
from intro_dgm.priors import StandardPrior


def _perturb(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def test_iwae_bound_above_elbo_and_grows_with_k(small_vae, digits):
    model = _perturb(small_vae)
    x = digits.test[:50]
    torch.manual_seed(0)
    avg_elbo = elbo(model, x).mean()
    # K = 1 is a one-sample ELBO estimate: averaged over many draws it equals the ELBO
    many = x.repeat(200, 1)
    assert iwae_log_likelihood(model, many, k=1).mean().item() == pytest.approx(
        elbo(model, many).mean().item(), abs=1.0)
    bounds = []
    for k in (1, 10, 100, 1000):
        torch.manual_seed(1)
        bounds.append(iwae_log_likelihood(model, x, k=k).mean().item())
    assert bounds[1] > avg_elbo
    assert all(b2 >= b1 for b1, b2 in zip(bounds, bounds[1:])), bounds


def test_iwae_chunking_does_not_change_the_estimate(small_vae, digits):
    x = digits.test[:20]
    torch.manual_seed(3)
    direct = torch.logsumexp(small_vae.log_weights(x, 64).double(), 1) - math.log(64)
    torch.manual_seed(3)
    one_chunk = iwae_log_likelihood(small_vae, x, k=64, chunk_size=64)
    assert torch.allclose(one_chunk, direct, atol=1e-5)
    # chunks of samples and batches of examples draw the same estimator in another order
    torch.manual_seed(4)
    chunked = iwae_log_likelihood(small_vae, x, k=4000, chunk_size=300, batch_size=7)
    torch.manual_seed(5)
    whole = iwae_log_likelihood(small_vae, x, k=4000, chunk_size=4000)
    assert torch.allclose(chunked, whole, atol=0.3)


def test_active_units_on_an_encoder_built_to_use_three_of_five(digits):
    torch.manual_seed(0)
    model = build_vae(VAEConfig(latent_dim=5, hidden=(16,)))
    last = model.encoder.net[1][-1]  # outputs: 5 means, then 5 log-variances
    with torch.no_grad():
        last.weight[[1, 3]] = 0.0  # means 1 and 3 ignore x: Cov_x(E[z_l]) = 0
        last.weight[[0, 2, 4]] *= 50.0  # the others vary far above the 0.01 threshold
    assert active_units(model, digits.test) == 3
    with torch.no_grad():
        last.weight[:5].zero_()
    assert active_units(model, digits.test) == 0
    assert active_units(model, digits.test, threshold=-1.0) == 5  # every variance is > -1


def test_evaluation_restores_the_training_mode(small_vae, digits):
    x = digits.test[:10]
    for mode in (True, False):
        small_vae.train(mode)
        elbo(small_vae, x)
        iwae_log_likelihood(small_vae, x, k=3)
        active_units(small_vae, x)
        assert small_vae.training is mode


def test_bits_per_dim():
    assert bits_per_dim(64 * math.log(2.0), 64) == pytest.approx(1.0)
    assert torch.allclose(bits_per_dim(torch.tensor([0.0, 2 * math.log(2.0)]), 2),
                          torch.tensor([0.0, 1.0]))


def test_bad_k_is_named(small_vae, digits):
    for k in (0, -5):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            iwae_log_likelihood(small_vae, digits.test[:4], k=k)


def test_sample_scorer_tells_digits_from_noise(digits):
    labels = load_digits_labels()
    assert labels["train"].shape == (1000,) and labels["test"].shape == (447,)
    scorer = SampleScorer(digits.train, labels["train"])
    real = scorer(digits.test)
    torch.manual_seed(0)
    noise = scorer(torch.randint(0, 17, (447, 64)).float())
    blends = scorer(0.5 * (digits.test[:200] + digits.test[200:400]))
    assert real["confidence"] > 0.8 and real["confidence"] > blends["confidence"] + 0.1
    assert real["class_entropy"] == pytest.approx(math.log(10), abs=0.05)  # all ten classes
    ones = digits.test[labels["test"] == 1]
    assert scorer(ones)["class_entropy"] < 1.0  # mostly one class; ln 10 = 2.30 for all ten
    assert noise["confidence"] < blends["confidence"] < real["confidence"]
    with pytest.raises(ValueError, match="labels"):
        SampleScorer(digits.train, labels["val"])


def _ppca_vae(ppca, shift=0.0, var_scale=1.0):
    """pPCA as a VAE: a linear Gaussian decoder and a linear encoder giving the exact posterior,
    its mean moved by ``shift`` posterior standard deviations, its variances times ``var_scale``."""
    L = ppca.latent_dim
    W, b, s2 = ppca.W, ppca.b, ppca.sigma2
    M_inv = torch.linalg.inv(W.T @ W + s2 * torch.eye(L, dtype=torch.float64))
    assert torch.allclose(M_inv, torch.diag(M_inv.diagonal()), atol=1e-12)
    var = s2 * M_inv.diagonal()
    enc = nn.Linear(64, 2 * L)
    dec = GaussianDecoder(nn.Linear(L, 64), 64)
    with torch.no_grad():                          # mean M^-1 W^T (x - b), variances s2 M^-1
        enc.weight.copy_(torch.cat([M_inv @ W.T, torch.zeros(L, 64, dtype=torch.float64)]))
        enc.bias.copy_(torch.cat([-M_inv @ W.T @ b + shift * var.sqrt(), (var_scale * var).log()]))
        dec.net.weight.copy_(W); dec.net.bias.copy_(b); dec.log_var.fill_(math.log(s2))
    return VAE(GaussianEncoder(enc, L), dec, StandardPrior(L))


def test_iwae_with_the_exact_posterior_is_the_exact_log_likelihood(digits):
    """A linear Gaussian decoder is pPCA; with the exact posterior as q every importance weight
    p(x|z) p(z) / q(z|x) equals p(x), so any k gives ln p(x). Leaving p(z) out of the weights, as
    the source's (4.32) prints them, would be off by nats here."""
    ppca = PPCA(3).fit(digits.train)   # fitted W has orthogonal columns: the posterior is diagonal
    vae = _ppca_vae(ppca)
    x = digits.test[:20]
    torch.manual_seed(0)
    estimate = iwae_log_likelihood(vae, x, k=3)
    assert torch.allclose(estimate.double(), ppca.log_prob(x), atol=1e-2)


def test_iwae_with_a_perturbed_posterior_climbs_to_the_exact_log_likelihood(digits):
    """With q(z|x) off the posterior (mean one posterior std away in every unit, variances
    doubled: KL[q || p(z|x)] = (2 - ln 2) / 2 = 0.65 nats per unit, 1.96 for the three) the
    bound starts at the ELBO and climbs to ln p(x) as k grows. An estimator that averaged the log-weights
    instead of taking the log of their mean would stay at the ELBO for every k.
    Measured (seed 0, 447 test images, mean minus ln p(x)): k = 1: -2.21, k = 10: -0.15,
    k = 1000: -0.005 (seeds 0-2: within 0.005; largest per-image |difference| 0.19)."""
    ppca = PPCA(3).fit(digits.train)
    vae = _ppca_vae(ppca, shift=1.0, var_scale=2.0)
    x = digits.test
    exact = ppca.log_prob(x)
    kl = 3 * 0.5 * (2.0 + 1.0 - 1.0 - math.log(2.0))     # KL[N(m + s, 2 s^2) || N(m, s^2)], 3 units
    bounds = {}
    for k in (1, 10, 1000):
        torch.manual_seed(0)
        bounds[k] = iwae_log_likelihood(vae, x, k=k).double()
    gap = {k: (v - exact).mean().item() for k, v in bounds.items()}
    assert gap[1] == pytest.approx(-kl, abs=0.4), gap           # k = 1: the ELBO, ln p(x) - KL
    assert gap[1] < gap[10] - 1.0 and gap[10] < gap[1000] - 0.1, gap
    assert gap[1000] <= 0.02 and abs(gap[1000]) < 0.02, gap
    assert (bounds[1000] - exact).abs().max() < 0.3


@pytest.mark.parametrize("name, config", [
    ("vae", {"latent_dim": 3, "hidden": [16]}),
    ("vae", {"latent_dim": 2, "hidden": [16], "prior": "mog"}),
    ("top-down", {"latent_dim": 3, "top_latent_dim": 2, "hidden": [16], "top_hidden": [8]}),
    ("two-level", {"latent_dim": 3, "top_latent_dim": 2, "hidden": [16], "top_hidden": [8]}),
    ("ddgm", {"steps": 4, "hidden": [16], "data_term": "categorical"}),
    ("realnvp", {"couplings": 2, "coupling_hidden": 8})])
def test_one_pass_gives_the_iw_bound_the_elbo_and_terms_that_add_up(name, config, digits):
    """From the same draws: elbo = rec - kl per image (and kl = sum of its parts), the IW
    estimate never below the ELBO, each equal to what the log-weights of those draws give."""
    from intro_dgm.evaluation import evaluate_bound
    from intro_dgm.models import build_model

    torch.manual_seed(0)
    model, x = build_model(name, config).eval(), digits.test[:12]
    torch.manual_seed(1)
    out = evaluate_bound(model, x, k=50, chunk_size=7)
    assert all(v.dtype == torch.float64 and v.shape == (12,) for v in out.values())
    if name == "realnvp":
        assert set(out) == {"log_likelihood", "elbo", "rec"}
        assert torch.equal(out["elbo"], out["rec"])
    else:
        assert torch.allclose(out["elbo"], out["rec"] - out["kl"], rtol=1e-12, atol=1e-9)
        parts = [v for k, v in out.items() if k.startswith("kl_")]
        assert len(parts) == {"vae": 0}.get(name, 2)
        if parts:
            assert torch.allclose(sum(parts), out["kl"], rtol=1e-5, atol=1e-5)  # float32 parts
    assert (out["log_likelihood"] >= out["elbo"] - 1e-9).all()
    # the same draws, through log_weights in one chunk: the same numbers
    torch.manual_seed(1)
    with torch.no_grad():  # chunks of 7 draws: 7 x 7 + 1
        log_w = torch.cat([model.log_weights(x, c) for c in [7] * 7 + [1]], dim=1)
    assert torch.allclose(out["elbo"], log_w.double().mean(1), rtol=1e-5)
    assert torch.allclose(out["log_likelihood"],
                          torch.logsumexp(log_w.double(), 1) - math.log(50), rtol=1e-5)
