"""The flow model of the pixels: an invertible map with the right log-determinant, and a
dequantisation bound that is a lower bound on a probability of the integer data."""
import pytest
import torch

from intro_dgm.evaluation import iwae_log_likelihood
from intro_dgm.models import MODELS, FlowModelConfig, build_model

from helpers import randomise

SMALL = dict(input_dim=2, num_vals=5, couplings=4, coupling_hidden=16)


def _model(**fields):
    torch.manual_seed(0)
    return randomise(build_model("realnvp", {**SMALL, **fields}), std=0.3).eval()


def test_round_trip_and_log_det_against_autograd():
    model = _model(input_dim=6)
    v = torch.rand(5, 6, dtype=torch.float64) * 5
    model = model.double()
    s, _ = model._to_logits(v)
    e, _ = model.flow(s)
    assert torch.allclose(model.flow.inverse(e), s, atol=1e-10)
    for row in v:
        def f(r):
            s, _ = model._to_logits(r[None])
            return model.flow(s)[0][0]
        jac = torch.autograd.functional.jacobian(f, row)
        s, log_det_logit = model._to_logits(row[None])
        _, log_det_flow = model.flow(s)
        assert torch.allclose(torch.linalg.slogdet(jac)[1], (log_det_logit + log_det_flow)[0],
                              atol=1e-9)
    x = torch.randint(0, 5, (7, 6)).double()
    assert torch.equal(model.reconstruct(x), x)


def test_dequantisation_bound_is_below_the_probability_of_the_integers():
    """P(x) = integral of p(x + u) over the unit cell, by quadrature in D = 2: the P(x) sum to
    at most 1 over all 25 images, the ELBO lies below ln P(x) and the IW bound tends to it."""
    model = _model().double()
    n = 100
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # midpoint rule on [0, 1)
    cell = torch.cartesian_prod(u, u)
    images = torch.cartesian_prod(torch.arange(5.0), torch.arange(5.0)).double()
    with torch.no_grad():
        log_p = torch.stack([torch.logsumexp(model.log_density(x + cell), 0) for x in images])
    log_p = log_p - 2 * torch.log(torch.tensor(float(n)))
    assert torch.logsumexp(log_p, 0).exp() <= 1.0 + 1e-6
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.loss(images)["elbo"] for _ in range(2000)]).mean(0)
    assert (elbo < log_p).all()
    iw = iwae_log_likelihood(model, images, k=4000)
    assert (elbo < iw).all()
    assert (iw - log_p).abs().max() < 0.15


def test_no_kl_and_samples_are_pixels():
    model = _model(input_dim=8).train()
    x = torch.randint(0, 5, (16, 8)).float()
    out = model.loss(x)
    assert torch.equal(out["elbo"], out["rec"]) and (out["kl"] == 0).all()
    s = model.sample(10)
    assert s.shape == (10, 8) and ((s >= 0) & (s <= 4) & (s == s.round())).all()


@pytest.mark.parametrize("fields, match", [
    ({"couplings": 0}, "couplings must be an integer >= 1"),
    ({"alpha": 0.5}, r"alpha must be a number in \(0, 0.5\)"),
    ({"likelihood": "bernoulli"}, "likelihood must be 'categorical'"),
    ({"input_dim": 1}, "input_dim must be an integer >= 2"),
])
def test_bad_config_is_named(fields, match):
    with pytest.raises(ValueError, match=match):
        FlowModelConfig(**{**SMALL, **fields})


def test_bad_input_is_named():
    model = _model()
    with pytest.raises(ValueError, match=r"x must hold integer pixel values in 0..4"):
        model.loss(torch.tensor([[0.0, 5.0]]))
    with pytest.raises(ValueError, match="beta .KL warm-up. does not apply to a flow model"):
        model.loss(torch.tensor([[0.0, 1.0]]), beta=0.5)
    assert "realnvp" in MODELS
