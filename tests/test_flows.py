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


# ----------------------------------------------------------------- degenerate inputs
def _step_matrix(step, v):
    """The matrix of a Householder step with vector ``v`` (1, L), from the step applied to the
    identity's columns (each row of the output is H e_i; H is symmetric, so this is H)."""
    L = v.shape[1]
    eye = torch.eye(L, dtype=v.dtype)
    rows, log_det = step(eye, v.expand(L, L))
    return rows.T, log_det


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [1e-30, 1e-20, 3e-7, 0.0])
def test_householder_stays_a_reflection_for_a_vanishing_vector(norm, dtype):
    """H = I - 2 v v^T / |v|^2 for |v| -> 0: orthogonal with det -1 (so log_det = 0 is its
    log |det|), in the step, its inverse and householder_matrix. A clamp of |v|^2 at 1e-12 gave
    det +0.82 at |v| = 3e-7 (not orthogonal, while log_det said 0) and H = I below."""
    torch.manual_seed(0)
    v = torch.randn(1, 4, dtype=torch.float64)
    v = (v / v.norm() * norm).to(dtype)
    step = Householder(4)
    H, log_det = _step_matrix(step, v)
    eye = torch.eye(4, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(H.T @ H, eye, atol=tol), H
    assert torch.linalg.det(H.double()).item() == pytest.approx(-1.0, abs=tol)
    assert torch.equal(log_det, torch.zeros(4, dtype=dtype))
    assert torch.allclose(householder_matrix(v)[0], H, atol=tol)
    assert torch.allclose(step.inverse(H.T, v.expand(4, 4)), eye, atol=tol)  # H H = I
    # gradients stay finite, even at v = 0 (where the direction is fixed: no gradient)
    v = v.clone().requires_grad_(True)
    z_new, _ = step(torch.randn(3, 4, dtype=dtype), v.expand(3, 4))
    (grad,) = torch.autograd.grad((z_new ** 3).sum(), v)
    assert torch.isfinite(grad).all()


def _orthonormality_error(q):
    return (q.transpose(1, 2) @ q - torch.eye(q.shape[-1], dtype=q.dtype)).abs().amax((1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bjorck_bowie_falls_back_per_row_on_rank_deficient_columns(dtype):
    """Duplicate columns, a zero column and an all-zero matrix have no unique polar factor
    and the iteration cannot reach one (it stalled at max|Q^T Q - I| = 0.5 and 1, and gave NaN
    for the zero matrix). Documented: those rows fall back to the SVD's U V^T (orthonormal,
    spanning q's columns), without gradient, with a warning; the other rows are untouched."""
    torch.manual_seed(0)
    q = torch.randn(4, 6, 3, dtype=dtype)
    q[0, :, 1] = q[0, :, 0]  # duplicate columns
    q[1, :, 2] = 0  # a zero column
    q[2] = 0  # nothing at all
    q.requires_grad_(True)
    with pytest.warns(RuntimeWarning, match=r"bjorck_bowie: 3 of 4 matrices .* U V\^T"):
        Q, iterations = bjorck_bowie(q, tol=1e-6)
    assert torch.isfinite(Q).all()
    assert (_orthonormality_error(Q) < 1e-5).all(), _orthonormality_error(Q)
    for i in (0, 1, 3):  # Q's columns span q's: projecting q onto them loses nothing
        assert torch.allclose(Q[i] @ Q[i].T @ q[i], q[i], atol=1e-4)
    assert iterations == 100
    alone, _ = bjorck_bowie(q[3:].detach(), tol=1e-6)
    assert torch.allclose(Q[3], alone[0], atol=1e-6)
    (grad,) = torch.autograd.grad((Q * torch.randn_like(Q)).sum(), q)
    assert torch.isfinite(grad).all() and (grad[:3] == 0).all() and (grad[3] != 0).any()


def test_bjorck_bowie_stops_each_row_at_its_own_tolerance():
    """A slow row (smallest singular value 1e-6 of the largest: ~40 iterations) no longer makes
    the fast rows (~8 iterations) iterate with it: each row's Q is what it gets alone."""
    torch.manual_seed(1)
    fast = torch.randn(3, 16, 4, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(torch.randn(16, 4, dtype=torch.float64), full_matrices=False)
    slow = (u * torch.tensor([1.0, 0.5, 0.1, 1e-6], dtype=torch.float64)) @ vh
    q = torch.cat([fast, slow[None]])
    Q, iterations = bjorck_bowie(q, tol=1e-6)
    fast_alone, fast_iterations = bjorck_bowie(fast, tol=1e-6)
    _, slow_iterations = bjorck_bowie(slow[None], tol=1e-6)
    assert fast_iterations < 12 and slow_iterations > 30 and iterations == slow_iterations
    assert torch.allclose(Q[:3], fast_alone, rtol=0, atol=1e-13)
    assert (_orthonormality_error(Q) < 1e-6).all()


def test_bjorck_bowie_names_bad_input():
    with pytest.raises(ValueError, match=r"q must be \(B, D, M\) with M <= D"):
        bjorck_bowie(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="q contains NaN or infinite values"):
        bjorck_bowie(torch.full((1, 3, 2), float("nan")))
