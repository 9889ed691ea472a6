import math

import pytest
import torch

from intro_dgm.distributions import log_normal_diag
from intro_dgm.evaluation import active_units, elbo, iwae_log_likelihood
from intro_dgm.models import VAE, VAEConfig, build_vae
from intro_dgm.priors import StandardPrior


def _perturb(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def test_loss_terms_are_consistent(small_vae, digits):
    out = small_vae.loss(digits.train[:32])
    assert set(out) >= {"loss", "elbo", "rec", "kl"}
    for v in out.values():
        assert v.shape == (32,) and torch.isfinite(v).all()
    assert torch.allclose(out["elbo"], out["rec"] - out["kl"])
    assert torch.allclose(out["loss"], -out["elbo"])
    assert (out["kl"] >= 0).all()  # closed-form KL to N(0, I)


def test_closed_form_kl_equals_monte_carlo_average(small_vae, digits):
    x = digits.train[:8]
    mu, log_var = small_vae.encoder(x)
    z = small_vae.encoder.sample(mu, log_var, k=20000)
    mc = (log_normal_diag(z, mu, log_var) - small_vae.prior.log_prob(z.reshape(-1, 4)).reshape(20000, 8)).mean(0)
    exact = small_vae.prior.kl(z[0], mu, log_var)
    assert torch.allclose(mc, exact, atol=0.05)


def test_every_parameter_gets_a_gradient_and_a_step_changes_weights(small_vae, digits):
    loss = small_vae.loss(digits.train[:64])["loss"].mean()
    loss.backward()
    for name, p in small_vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in small_vae.parameters()]
    torch.optim.Adam(small_vae.parameters(), lr=1e-3).step()
    assert all(not torch.equal(a, b) for a, b in zip(before, small_vae.parameters()))


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
    direct = torch.logsumexp(small_vae.log_weights(x, 64), 1) - math.log(64)
    torch.manual_seed(3)
    one_chunk = iwae_log_likelihood(small_vae, x, k=64, chunk_size=64)
    assert torch.allclose(one_chunk, direct, atol=1e-5)
    # chunks of samples and batches of examples draw the same estimator in another order
    torch.manual_seed(4)
    chunked = iwae_log_likelihood(small_vae, x, k=4000, chunk_size=300, batch_size=7)
    torch.manual_seed(5)
    whole = iwae_log_likelihood(small_vae, x, k=4000, chunk_size=4000)
    assert torch.allclose(chunked, whole, atol=0.3)


def test_sample_and_reconstruct(small_vae, digits):
    s = small_vae.sample(10)
    assert s.shape == (10, 64) and ((s >= 0) & (s <= 16) & (s == s.round())).all()
    r = small_vae.reconstruct(digits.test[:5])
    assert r.shape == (5, 64) and ((r >= 0) & (r <= 16)).all()


def test_bernoulli_and_gaussian_decoders(digits):
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(latent_dim=3, hidden=(16,), num_vals=2, likelihood="bernoulli"))
    xb = (digits.train[:16] >= 8).float()
    out = vae.loss(xb)
    assert torch.isfinite(out["loss"]).all()
    with pytest.raises(ValueError, match="binary"):
        vae.loss(digits.train[:16])
    g = build_vae(VAEConfig(input_dim=2, latent_dim=2, hidden=(16,), likelihood="gaussian"))
    assert torch.isfinite(g.loss(torch.randn(8, 2))["loss"]).all()


def test_prior_is_swappable_and_checked(digits):
    torch.manual_seed(0)
    base = build_vae(VAEConfig(latent_dim=4, hidden=(16,)))

    class ShiftedPrior(StandardPrior):  # N(1, I): a different prior, same interface
        def _log_prob(self, z):
            return super()._log_prob(z - 1.0)

        def kl(self, z, mu_e, log_var_e):
            return log_normal_diag(z, mu_e, log_var_e) - self._log_prob(z)

    vae = VAE(base.encoder, base.decoder, ShiftedPrior(4))
    torch.manual_seed(0)
    a = vae.loss(digits.train[:8])["kl"]
    torch.manual_seed(0)
    b = base.loss(digits.train[:8])["kl"]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="prior.latent_dim"):
        VAE(base.encoder, base.decoder, StandardPrior(3))


@pytest.mark.parametrize("x, match", [
    (torch.full((4, 64), 17.0), "0..16"),
    (torch.full((4, 64), -1.0), "0..16"),
    (torch.full((4, 64), 2.5), "integer pixel values"),
    (torch.full((4, 64), float("nan")), "NaN"),
    (torch.zeros(4, 63), "size 64"),
    (torch.zeros(64), "2 dimensions"),
    (torch.zeros(4, 64, dtype=torch.long), "floating point"),
])
def test_bad_input_is_named(small_vae, x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        small_vae.loss(x)


def test_bad_config_and_k(small_vae, digits):
    with pytest.raises(ValueError, match="latent_dim must be an integer >= 1"):
        VAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAEConfig(likelihood="poisson")
    for k in (0, -5):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            iwae_log_likelihood(small_vae, digits.test[:4], k=k)


def test_active_units_counts_used_dimensions(small_vae, digits):
    assert 0 <= active_units(small_vae, digits.test) <= 4
    with torch.no_grad():  # an encoder whose means ignore x has no active unit
        last = small_vae.encoder.net[1][-1]
        last.weight[:4].zero_()
    assert active_units(small_vae, digits.test) == 0
