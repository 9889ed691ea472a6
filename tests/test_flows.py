"""Flow steps: one direction, log-determinants against autograd, the params contract."""
import pytest
import torch

from intro_dgm.flows import AffineCoupling, FlowSequence, FlowStep, realnvp

from helpers import randomise


def _jacobian_log_det(f, z):
    """log|det df/dz| of every row, by autograd (small dimensions only)."""
    return torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
        lambda v: f(v[None])[0], row))[1] for row in z])


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


# ----------------------------------------------------------------- Householder, Sylvester
from intro_dgm.flows import (Householder, Sylvester, bjorck_bowie, householder_matrix,  # noqa: E402
                             householder_product)


def test_householder_is_an_orthogonal_reflection_with_unit_determinant():
    torch.manual_seed(0)
    v, z = torch.randn(5, 4), torch.randn(5, 4)
    H = householder_matrix(v)
    eye = torch.eye(4).expand(5, 4, 4)
    assert torch.allclose(H @ H.transpose(1, 2), eye, atol=1e-5)  # orthogonal
    assert torch.allclose(H, H.transpose(1, 2))  # symmetric, so its own inverse
    assert torch.allclose(torch.linalg.det(H).abs(), torch.ones(5), atol=1e-5)
    assert torch.allclose(torch.linalg.det(H), -torch.ones(5), atol=1e-5)  # a reflection
    step = Householder(4)
    z_new, log_det = step(z, v)
    assert torch.allclose(z_new, (H @ z[:, :, None])[..., 0], atol=1e-5)
    assert torch.equal(log_det, torch.zeros(5))
    assert torch.allclose(_jacobian_log_det(lambda u: step(u, v[:1])[0], z[:1]), torch.zeros(1), atol=1e-5)
    assert torch.allclose(step.inverse(z_new, v), z, atol=1e-5)
    assert torch.allclose(z_new.norm(dim=1), z.norm(dim=1), atol=1e-5)  # lengths kept
    with pytest.raises(ValueError, match="params must be the vectors v of shape"):
        step(z, None)


def test_bjorck_bowie_converges_to_orthonormal_columns():
    torch.manual_seed(0)
    q0 = torch.randn(3, 6, 4)
    q, iterations = bjorck_bowie(q0, tol=1e-6)
    assert 1 < iterations < 100
    assert (q.transpose(1, 2) @ q - torch.eye(4)).abs().max() < 1e-5
    # Its columns span the same space as q0's: projecting q0 onto them loses nothing.
    assert torch.allclose(q @ q.transpose(1, 2) @ q0, q0, atol=1e-4)
    q_h = householder_product(torch.randn(2, 3, 5))
    assert torch.allclose(q_h.transpose(1, 2) @ q_h, torch.eye(5).expand(2, 5, 5), atol=1e-5)


def _sylvester_params(kind, B=4, D=4, M=2, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = M if kind == "orthogonal" else D
    p = {"r": scale * torch.randn(B, m, m, generator=g),
         "r_tilde": scale * torch.randn(B, m, m, generator=g), "b": torch.randn(B, m, generator=g)}
    if kind == "orthogonal":
        p["q"] = torch.randn(B, D, M, generator=g)
    if kind == "householder":
        p["q"] = torch.randn(B, 3, D, generator=g)
    return p


def test_sylvester_is_invertible_by_construction_even_for_extreme_parameters():
    # Diagonals of size 1e3 would break the condition R_ii R~_ii > -1 without the tanh:
    # the Jacobian would be singular or flip orientation for some z.
    step, params = Sylvester(4, "triangular"), _sylvester_params("triangular", B=200, scale=1e3)
    z = 3 * torch.randn(200, 4)
    _, log_det = step(z, params)
    assert torch.isfinite(log_det).all()
    # The worst case: tanh saturated to exactly +-1 in float32, opposite signs, and a = 0.
    worst = {"r": torch.full((1, 4, 4), 50.0), "r_tilde": torch.full((1, 4, 4), -50.0),
             "b": torch.zeros(1, 4)}
    assert torch.isfinite(step(torch.zeros(1, 4), worst)[1]).all()
    for i in range(0, 200, 40):
        row = {k: v[i:i + 1] for k, v in params.items()}
        jac = torch.autograd.functional.jacobian(lambda u: step(u[None], row)[0][0], z[i])
        assert torch.linalg.det(jac) > 0


def test_sylvester_determinant_identity_on_random_matrices():
    # det(I_D + A B) = det(I_M + B A) for A (D, M), B (M, D): what makes the step cheap.
    torch.manual_seed(2)
    A, B = torch.randn(6, 2, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    assert torch.allclose(torch.linalg.det(torch.eye(6, dtype=torch.float64) + A @ B),
                          torch.linalg.det(torch.eye(2, dtype=torch.float64) + B @ A))


def test_sylvester_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        Sylvester(4, "lower")
    with pytest.raises(ValueError, match="reverse applies to kind='triangular' only"):
        Sylvester(4, "orthogonal", reverse=True)
    with pytest.raises(ValueError, match="params must be a dict with 'r', 'r_tilde', 'b' and q"):
        Sylvester(4, "orthogonal")(torch.randn(2, 4), {"r": torch.randn(2, 2, 2)})
