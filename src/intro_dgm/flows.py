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
