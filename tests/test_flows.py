"""Flow steps: one direction, log-determinants against autograd, the params contract."""
import pytest
import torch

from intro_dgm.flows import AffineCoupling, FlowSequence, FlowStep, realnvp

from helpers import randomise


def _jacobian_log_det(f, z):
    """log|det df/dz| of every row, by autograd (small dimensions only)."""
    return torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
        lambda v: f(v[None])[0], row))[1] for row in z])


def test_coupling_log_det_equals_autograd_jacobian_and_inverts():
    torch.manual_seed(0)
    flow = randomise(realnvp(4, num_layers=3, hidden=8), std=0.5)
    z = torch.randn(6, 4)
    z_new, log_det = flow(z)
    assert log_det.shape == (6,)
    expected = _jacobian_log_det(lambda v: flow(v)[0], z)
    assert torch.allclose(log_det, expected, atol=1e-4)
    assert log_det.abs().min() > 1e-2  # the parameters are not at the identity
    assert torch.allclose(flow.inverse(z_new), z, atol=1e-5)


def test_coupling_starts_at_the_identity_and_leaves_its_fixed_half_alone():
    step = AffineCoupling(4, hidden=8, parity=1)
    z = torch.randn(5, 4)
    z_new, log_det = step(z)
    assert torch.equal(z_new, z) and torch.equal(log_det, torch.zeros(5))
    randomise(step, std=0.5)
    z_new, _ = step(z)
    assert torch.equal(z_new[:, 1::2], z[:, 1::2])  # parity 1 keeps the odd coordinates
    assert not torch.allclose(z_new[:, 0::2], z[:, 0::2])


class _Scale(FlowStep):
    """An amortised step: z_new = z * exp(a) with a per-example vector ``a`` in ``params``."""

    def forward(self, z, params=None):
        return z * torch.exp(params), params.sum(-1)

    def inverse(self, z_new, params=None):
        return z_new * torch.exp(-params)


def test_sequence_passes_one_params_entry_per_step_in_order():
    torch.manual_seed(0)
    coupling = randomise(AffineCoupling(3, hidden=8), std=0.5)
    flow = FlowSequence([_Scale(), coupling, _Scale()])
    z, a, b = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    z_new, log_det = flow(z, [a, None, b])
    # The same map by hand, first step first.
    h, ld1 = _Scale()(z, a)
    h, ld2 = coupling(h)
    h, ld3 = _Scale()(h, b)
    assert torch.allclose(z_new, h) and torch.allclose(log_det, ld1 + ld2 + ld3)
    for i in range(4):
        expected = _jacobian_log_det(
            lambda v: flow(v, [a[i:i + 1], None, b[i:i + 1]])[0], z[i:i + 1])
        assert torch.allclose(log_det[i:i + 1], expected, atol=1e-4)
    assert torch.allclose(flow.inverse(z_new, [a, None, b]), z, atol=1e-5)


def test_params_errors_are_clear():
    step = AffineCoupling(4)
    with pytest.raises(ValueError, match="params must be None"):
        step(torch.randn(2, 4), params=torch.randn(2, 4))
    with pytest.raises(ValueError, match="one entry per step"):
        realnvp(4, num_layers=2)(torch.randn(2, 4), [None])
    with pytest.raises(NotImplementedError, match="no closed-form inverse"):
        FlowStep().inverse(torch.randn(2, 4))
    with pytest.raises(ValueError, match="parity"):
        AffineCoupling(4, parity=2)
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        AffineCoupling(1)
