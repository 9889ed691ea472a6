r"""Invertible transformations with a tractable Jacobian determinant (normalising flows).

**One direction, everywhere.** A flow step maps ``z`` to ``z_new``:

    ``forward(z, params=None) -> (z_new, log_det)``, with ``log_det = ln |det dz_new/dz|``
    of shape ``(B,)``; ``inverse(z_new, params=None) -> z`` where a closed form exists.

``params`` carries *amortised* parameters: values computed from each ``x`` by an encoder
(one row per example, e.g. the Householder vectors of a flow posterior). A step with global
parameters (its own ``nn.Parameter`` objects) takes none and refuses any it is given.

A :class:`FlowSequence` applies its steps in order and sums their ``log_det`` starting from
``z.new_zeros(B)``; the change of variables then reads

.. math:: \ln p_Z(z) = \ln p_U(f(z)) + \ln\left|\det \frac{\partial f(z)}{\partial z}\right|.

The log-determinant is a sum over *dimensions* that every step has already done: it is
added to a log-density once per example, never once per latent dimension.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .nets import mlp
from .utils import check_int, check_tensor


class FlowStep(nn.Module):
    """Base class: ``forward(z, params=None) -> (z_new, log_det)``; ``inverse`` is optional
    (a Sylvester flow has none in closed form) and raises ``NotImplementedError`` here."""

    def forward(self, z: torch.Tensor, params=None
                ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z_new: torch.Tensor, params=None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form inverse")

    def prepare(self, params):
        """The work on per-example ``params`` that does not involve ``z``, done once: returns
        params that ``forward`` accepts in their place. A posterior calls it before it repeats
        the rows for ``k`` samples, so that work is not repeated ``k`` times (a Sylvester
        step's orthonormal ``Q``). Here: nothing to do."""
        return params

    def _no_params(self, params) -> None:
        """Steps with global parameters take no per-example ones: say so instead of ignoring."""
        if params is not None:
            raise ValueError(f"{type(self).__name__} has global parameters; params must be "
                             f"None, got {type(params).__name__}")


class AffineCoupling(FlowStep):
    r"""RealNVP affine coupling (Dinh et al., 2017) with a binary mask :math:`m`.

    .. math::
        z_{new} = m \odot z + (1 - m) \odot \left(z \odot e^{s(m\odot z)} + t(m \odot z)\right),
        \qquad \ln|\det| = \textstyle\sum_d (1 - m_d)\, s_d(m \odot z).

    The masked half passes unchanged and conditions the scale ``s`` and shift ``t`` of the
    other half, so the Jacobian is triangular and the inverse is explicit.

    Args:
        dim: size of ``z`` (at least 2: one half conditions the other).
        hidden: hidden units of the network giving ``s`` and ``t``.
        parity: 0 keeps the even coordinates fixed, 1 the odd ones; alternate it between
            steps so that every coordinate gets transformed.
    """

    def __init__(self, dim: int, hidden: int = 64, parity: int = 0):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=2)
        check_int(hidden, "hidden", minimum=1)
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        self.register_buffer("mask", (torch.arange(dim) % 2 == parity).float())
        self.net = mlp(dim, (hidden, hidden), 2 * dim)
        # s = scale * tanh(raw): a bounded log-scale keeps exp(s) from overflowing early in
        # training; the learned per-dimension `scale` gives the range back where it helps.
        self.scale = nn.Parameter(torch.ones(dim))
        # Start at the identity map: the last layer gives s = t = 0. (Tests randomise it.)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _s_t(self, z_fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(z_fixed).chunk(2, dim=-1)
        free = 1.0 - self.mask
        return free * self.scale * torch.tanh(raw_s), free * t

    def forward(self, z, params=None):
        self._no_params(params)
        check_tensor(z, "z", ndim=2, last_dim=self.dim)
        s, t = self._s_t(self.mask * z)
        z_new = self.mask * z + (1.0 - self.mask) * (z * torch.exp(s) + t)
        return z_new, s.sum(dim=-1)  # s is zero on the fixed half

    def inverse(self, z_new, params=None):
        self._no_params(params)
        check_tensor(z_new, "z_new", ndim=2, last_dim=self.dim)
        s, t = self._s_t(self.mask * z_new)  # the fixed half is the same in z and z_new
        return self.mask * z_new + (1.0 - self.mask) * (z_new - t) * torch.exp(-s)


class FlowSequence(FlowStep):
    """Steps applied in order; ``log_det`` is the sum of the steps' log-determinants.

    ``params``, when given, is a sequence with one entry per step (``None`` for a step with
    global parameters).
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = nn.ModuleList(steps)  # a ModuleList, so the steps' parameters are trained

    def _per_step(self, params) -> list:
        if params is None:
            return [None] * len(self.steps)
        params = list(params)
        if len(params) != len(self.steps):
            raise ValueError(f"params must have one entry per step ({len(self.steps)}), "
                             f"got {len(params)}")
        return params

    def prepare(self, params):
        if params is None:
            return None
        return [p if p is None else step.prepare(p)
                for step, p in zip(self.steps, self._per_step(params))]

    def forward(self, z, params=None):
        log_det = z.new_zeros(z.shape[0])
        for step, p in zip(self.steps, self._per_step(params)):
            z, ld = step(z, p)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z_new, params=None):
        for step, p in zip(reversed(self.steps), reversed(self._per_step(params))):
            z_new = step.inverse(z_new, p)
        return z_new


def realnvp(dim: int, num_layers: int = 4, hidden: int = 64) -> FlowSequence:
    """``num_layers`` affine couplings with alternating masks."""
    check_int(num_layers, "num_layers", minimum=1)
    return FlowSequence([AffineCoupling(dim, hidden, parity=i % 2) for i in range(num_layers)])


# ----------------------------------------------------------------- flow posteriors' steps
def householder_matrix(v: torch.Tensor) -> torch.Tensor:
    r"""The Householder reflection :math:`H = I - 2\,\frac{v v^\top}{\lVert v\rVert^2}` of every row
    of ``v`` ``(B, L)``: ``(B, L, L)``. Symmetric and orthogonal, so :math:`H^{-1} = H` and
    :math:`|\det H| = 1` (chapter: variational posteriors). See :func:`_unit` for ``v -> 0``."""
    v_hat = _unit(v)
    eye = torch.eye(v.shape[-1], dtype=v.dtype, device=v.device)
    return eye - 2.0 * v_hat[:, :, None] * v_hat[:, None, :]


def _unit(v: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat v = v / \lVert v\rVert` of every row, so that :math:`H = I - 2\hat v\hat v^\top`
    is a reflection (:math:`\det H = -1`, orthogonal to rounding) however small ``v`` is.

    ``v`` is divided by its largest entry first: :math:`\lVert v\rVert^2` of a ``v`` of norm 1e-30
    underflows in float32, and a floor on it (the old clamp at 1e-12) turned ``H`` into a
    matrix that is no reflection (``det = +0.82`` at ``|v| = 3e-7``) while ``log_det`` still said
    0. A ``v`` that is exactly zero defines no direction; it reflects along ``e_1`` instead (a
    fixed choice: the step stays a reflection, its own inverse, with ``log_det = 0``) and
    passes no gradient to ``v``.
    """
    scale = v.abs().amax(-1, keepdim=True)
    nonzero = scale > 0
    e_1 = torch.zeros_like(v)
    e_1[..., 0] = 1
    # the where's keep 0/0 out of both branches (a NaN there would reach the gradient)
    u = torch.where(nonzero, v / torch.where(nonzero, scale, torch.ones_like(scale)), e_1)
    return u / u.norm(dim=-1, keepdim=True)  # |u| >= 1: its largest entry is +-1


def _reflect(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``H z`` without forming ``H``: ``z - 2 v_hat (v_hat . z)`` (rows of ``z`` and ``v``)."""
    v_hat = _unit(v)
    return z - 2.0 * v_hat * (z * v_hat).sum(-1, keepdim=True)


class Householder(FlowStep):
    r"""A Householder step (Tomczak & Welling, 2016): :math:`z_{new} = H z` with
    :math:`H = I - 2 v v^\top / \lVert v\rVert^2`, volume preserving (``log_det = 0``).

    ``params`` is ``v`` ``(B, L)``, one vector per example (amortised: in the book's flow
    posterior :math:`v_1 = W_1 h(x)` comes from the encoder's last hidden layer and
    :math:`v_t = \mathrm{Linear}(v_{t-1})`). The inverse is the step itself.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)

    def _check(self, z, v):
        check_tensor(z, "z", ndim=2, last_dim=self.dim)
        if not isinstance(v, torch.Tensor) or v.shape != z.shape:
            raise ValueError(f"params must be the vectors v of shape {tuple(z.shape)} "
                             f"(one per row of z), got "
                             f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")

    def forward(self, z, params=None):
        self._check(z, params)
        return _reflect(z, params), z.new_zeros(z.shape[0])

    def inverse(self, z_new, params=None):
        self._check(z_new, params)
        return _reflect(z_new, params)  # H H = I


def bjorck_bowie(q: torch.Tensor, tol: float = 1e-6, max_iter: int = 100
                 ) -> tuple[torch.Tensor, int]:
    r"""Orthonormalise the columns of ``q`` ``(B, D, M)`` (``M <= D``) by the iteration of
    Björck & Bowie (1971), as in Sylvester flows (van den Berg et al., 2018):

    .. math:: Q_{k+1} = Q_k \left(I + \tfrac12 \left(I - Q_k^\top Q_k\right)\right),

    which converges when :math:`\lVert Q_0^\top Q_0 - I\rVert_2 < 1`; dividing by the Frobenius
    norm first puts every singular value in :math:`(0, 1]`, which guarantees it for a
    full-rank ``q``. Each matrix of the batch iterates until its own
    :math:`\max|Q^\top Q - I| <` ``tol``, and only the ones not there yet are iterated (one
    slow matrix no longer moves the others). Returns ``(Q, iterations)``, the most any matrix
    took. Differentiable: gradients flow through the iterations.

    **Rank-deficient matrices fall back, with a warning.** The iteration multiplies the
    smallest singular value by about 3/2 per step, so from any :math:`s_{\min}/\lVert q\rVert_F`
    above 1e-17 it converges within 100 iterations; a matrix still above ``tol`` after
    ``max_iter`` has dependent columns (duplicates, a zero column: there it stalls at
    :math:`\max|Q^\top Q - I|` = 0.5 or 1; an all-zero ``q`` gave NaN). Its polar factor is
    not unique and has no derivative. Such a matrix gets :math:`UV^\top` from its SVD instead
    -- the iteration's own limit for a full-rank matrix, and for a rank-deficient one an
    orthonormal basis that contains its columns' span -- without gradient, and a
    ``RuntimeWarning`` counts them. Falling back rather than raising keeps a training run
    alive: a Sylvester step needs only :math:`Q^\top Q = I` for its log-determinant, which the
    fallback gives.
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 3 or q.shape[2] > q.shape[1]:
        raise ValueError(f"q must be (B, D, M) with M <= D, got "
                         f"{tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__}")
    check_tensor(q, "q")
    norm = q.flatten(1).norm(dim=1)[:, None, None]
    q = q / torch.where(norm > 0, norm, torch.ones_like(norm))  # an all-zero q stays 0
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    out = torch.empty_like(q)
    rows, q_k = torch.arange(q.shape[0], device=q.device), q  # the matrices still iterating
    for it in range(1, max_iter + 1):
        q_k = q_k @ (eye + 0.5 * (eye - q_k.transpose(1, 2) @ q_k))
        done = (q_k.transpose(1, 2) @ q_k - eye).abs().amax((1, 2)) < tol
        if done.any():
            out[rows[done]] = q_k[done]
            rows, q_k = rows[~done], q_k[~done]
        if not rows.numel():
            return out, it
    with torch.no_grad():
        u, _, vh = torch.linalg.svd(q[rows], full_matrices=False)
    out[rows] = u @ vh  # no graph behind u and vh: no gradient to these rows
    warnings.warn(f"bjorck_bowie: {rows.numel()} of {q.shape[0]} matrices did not reach "
                  f"max|Q^T Q - I| < {tol:g} in {max_iter} iterations (dependent columns); "
                  f"they get U V^T from their SVD, without gradient", RuntimeWarning,
                  stacklevel=2)
    return out, max_iter


def householder_product(vs: torch.Tensor) -> torch.Tensor:
    """``Q = H(v_1) H(v_2) ... H(v_H)`` for ``vs`` ``(B, H, D)``: an orthogonal ``(B, D, D)``
    (the H-SNF's way to an orthogonal matrix)."""
    q = torch.eye(vs.shape[-1], dtype=vs.dtype, device=vs.device).expand(vs.shape[0], -1, -1)
    for i in range(vs.shape[1]):
        q = q @ householder_matrix(vs[:, i])
    return q


class Sylvester(FlowStep):
    r"""A Sylvester normalising-flow step (van den Berg et al., 2018):

    .. math:: z_{new} = z + Q R\, h\big(\tilde R Q^\top z + b\big), \qquad h = \tanh,

    with ``Q`` ``(D, M)`` of orthonormal columns and ``R``, :math:`\tilde R` upper triangular
    ``(M, M)``. By Sylvester's determinant identity :math:`\det(I_D + AB) = \det(I_M + BA)`,
    and because the product of triangular matrices is triangular,

    .. math:: \ln|\det \partial z_{new}/\partial z| = \sum_{i=1}^M \ln\big|1 + h'(a_i)\,
              \tilde R_{ii} R_{ii}\big|, \quad a = \tilde R Q^\top z + b .

    The step is invertible when :math:`R_{ii}\tilde R_{ii} > -1/\lVert h'\rVert_\infty = -1`;
    here the diagonals are :math:`0.999\tanh` of free numbers, so :math:`|R_{ii}\tilde R_{ii}| < 1`
    by construction (in floating point too). No closed-form inverse exists.

    Args:
        dim: ``D``.
        kind: how ``Q`` is made from ``params["q"]``: ``"orthogonal"`` (O-SNF: a ``(B, D, M)``
            matrix orthonormalised by :func:`bjorck_bowie`), ``"householder"`` (H-SNF: ``(B, H,
            D)`` vectors multiplied into ``Q`` by :func:`householder_product`, ``M = D``) or
            ``"triangular"`` (T-SNF: ``Q`` is the identity or, with ``reverse``, the reversal
            permutation; no ``params["q"]``, ``M = D``).
        reverse: T-SNF only: use the reversal permutation (alternate it between steps).

    ``params`` is a dict of per-example tensors: ``"r"`` and ``"r_tilde"`` ``(B, M, M)`` (only
    their upper triangles are used; the diagonals pass through ``tanh``), ``"b"`` ``(B, M)``
    and ``"q"`` as above -- or, after :meth:`prepare`, ``"Q"`` itself ``(B, D, M)``.
    """

    KINDS = ("orthogonal", "householder", "triangular")

    def __init__(self, dim: int, kind: str = "orthogonal", reverse: bool = False):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}; got {kind!r}")
        if reverse and kind != "triangular":
            raise ValueError("reverse applies to kind='triangular' only")
        self.kind, self.reverse = kind, bool(reverse)

    def prepare(self, params):
        """``params`` with ``"q"`` replaced by the orthonormal ``"Q"`` it makes (per example)."""
        if not isinstance(params, dict) or "q" not in params or self.kind == "triangular":
            return params
        rest = {name: value for name, value in params.items() if name != "q"}
        return {**rest, "Q": self.orthogonal(params, params["q"].shape[0], params["q"])}

    def orthogonal(self, params: dict, batch: int, like: torch.Tensor) -> torch.Tensor:
        """``Q`` ``(B, D, M)`` for this batch (``params["Q"]`` if :meth:`prepare` made it)."""
        if "Q" in params:
            return params["Q"]
        if self.kind == "orthogonal":
            return bjorck_bowie(params["q"])[0]
        if self.kind == "householder":
            return householder_product(params["q"])
        eye = torch.eye(self.dim, dtype=like.dtype, device=like.device)
        q = eye.flip(1) if self.reverse else eye
        return q.expand(batch, -1, -1)

    #: The diagonals are ``DIAG_BOUND * tanh(raw)``: in float32 ``tanh`` reaches exactly 1
    #: (from about 9), where ``R_ii R~_ii = -1`` would make the map singular at ``a = 0``;
    #: the bound keeps ``1 + h' R_ii R~_ii >= 1 - 0.999^2 > 0`` in floating point too.
    DIAG_BOUND = 0.999

    @classmethod
    def triangular(cls, raw: torch.Tensor) -> torch.Tensor:
        """Upper triangle of ``raw`` with ``DIAG_BOUND * tanh`` on its diagonal (``|R_ii| < 1``)."""
        diag = cls.DIAG_BOUND * torch.tanh(torch.diagonal(raw, dim1=-2, dim2=-1))
        return torch.triu(raw, diagonal=1) + torch.diag_embed(diag)

    def forward(self, z, params=None):
        check_tensor(z, "z", ndim=2, last_dim=self.dim)
        if not isinstance(params, dict) or not {"r", "r_tilde", "b"} <= set(params) or (
                self.kind != "triangular" and not {"q", "Q"} & set(params)):
            raise ValueError(f"params must be a dict with 'r', 'r_tilde', 'b'"
                             f"{'' if self.kind == 'triangular' else ' and q (or the prepared Q)'}"
                             f" for a {self.kind} Sylvester step")
        q = self.orthogonal(params, z.shape[0], z)
        r, r_tilde = self.triangular(params["r"]), self.triangular(params["r_tilde"])
        a = (r_tilde @ (q.transpose(1, 2) @ z[:, :, None]))[..., 0] + params["b"]
        h = torch.tanh(a)
        z_new = z + (q @ (r @ h[:, :, None]))[..., 0]
        h_prime = 1.0 - h ** 2
        diag = torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(r_tilde, dim1=-2, dim2=-1)
        # 1 + h' * diag > 0 because h' is in (0, 1] and |diag| < 1 (the invertibility condition)
        return z_new, torch.log1p(h_prime * diag).sum(-1)
