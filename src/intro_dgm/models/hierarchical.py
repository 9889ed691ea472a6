r"""Hierarchical VAEs with two stochastic levels (chapter: hierarchical VAEs).

The generative model is the same for both: a top latent :math:`z_2 \in \mathbb{R}^{L_2}`, a
bottom latent :math:`z_1 \in \mathbb{R}^{L_1}` and

.. math:: p(x, z_1, z_2) = p(x \mid z_1)\, p(z_1 \mid z_2)\, p(z_2)

(or :math:`p(x \mid z_1, z_2)` with ``decoder_uses_top``, as in the VampPrior paper), with
:math:`p(z_1|z_2)` a diagonal Gaussian computed from :math:`z_2` and :math:`p(z_2)` the
standard Gaussian or a VampPrior. They differ in the variational posterior:

* :class:`TwoLevelVAE` (bottom-up): :math:`q(z_1|x)\,q(z_2|z_1, x)` (the book's 4.76) or
  :math:`q(z_1|x)\,q(z_2|z_1)` (4.77, ``top_posterior_sees_x=False``). Inference runs in the
  opposite direction to generation, so the two never share a network.
* :class:`TopDownVAE`: :math:`q(z_2|x)\,q(z_1|x, z_2)`. A deterministic bottom-up path
  :math:`h_1 = f_1(x)`, :math:`h_2 = f_2(h_1)` gives :math:`q(z_2|x)`; the *shared* top-down
  path :math:`d = g(z_2)` gives the prior :math:`p(z_1|z_2) = \mathcal{N}(\mu_p(d),
  \sigma_p^2(d))` and, with :math:`h_1`, the posterior relative to it,
  :math:`q(z_1|x,z_2) = \mathcal{N}(\mu_p + \Delta\mu,\ \sigma_p^2\,\Delta\sigma^2)`
  (Vahdat & Kautz, 2020), whose KL to the prior needs no prior statistics but
  :math:`\sigma_p`:

  .. math:: \mathrm{KL} = \tfrac12 \sum_l \Big(\frac{\Delta\mu_l^2}{\sigma_{p,l}^2}
            + \Delta\sigma_l^2 - \ln \Delta\sigma_l^2 - 1\Big).

Both keep the VAE's contract: ``loss(x, beta)`` returns per-example ``loss``, ``elbo``,
``rec``, ``kl`` and the KL term of each level (``kl_z1``, ``kl_z2``), which add up to
``kl``. (In the bottom-up model ``kl_z1 = ln q(z1|x) - ln p(z1|z2)`` is a one-sample estimate
of a difference of expectations, not a KL: per sample it can be negative.)
``log_weight_terms(x, k)`` the importance log-weights over *all* latents, split by level;
``sample(n, mean=False, z2=None)``; ``posterior_means(x)`` per level (the active units);
``kl_groups`` names each level's KL term and size (free bits floor each level's total KL at
:math:`\eta L_g`, not each dimension's).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import DataFields
from ..decoders import make_decoder
from ..distributions import log_normal_diag
from ..nets import Rescale, mlp
from ..posteriors import DiagonalGaussian, analytic_kl
from ..priors import Prior, StandardPrior, make_prior
from ..utils import check_config, check_int, check_sizes
from .base import LatentVariableModel, follows_device

#: the priors a top level can have
TOP_PRIORS = ("standard", "vampprior")


def _expand(x: torch.Tensor, k: int | None) -> torch.Tensor:
    """``x`` ``(B, D)`` as ``(k, B, D)`` (a view) when ``k`` is given."""
    return x if k is None else x.expand(k, *x.shape)


def _gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, log_var = out.chunk(2, dim=-1)
    return mu, log_var


#: The log-variance of p(z_1|z_2) is kept in (-LOG_VAR_BOUND, LOG_VAR_BOUND) by a soft clamp
#: (NVAE bounds its log-scales the same way, Vahdat & Kautz, 2020): the prior's inverse
#: variance multiplies the KL of level 1, which would explode if the variance collapsed.
LOG_VAR_BOUND = 10.0


def _prior_gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu_p, log_var_p)`` of p(z_1|z_2) from a network's output, the log-variance soft-clamped
    to (-LOG_VAR_BOUND, LOG_VAR_BOUND) (smooth, so its gradient never vanishes abruptly)."""
    mu, log_var = out.chunk(2, dim=-1)
    return mu, LOG_VAR_BOUND * torch.tanh(log_var / LOG_VAR_BOUND)


class TopEncoder(nn.Module):
    r""":math:`q(z_2|x)` of the top-down VAE: the bottom-up path :math:`h_1 = f_1(x)`,
    :math:`h_2 = f_2(h_1)`, then a linear head. A module of its own so that a VampPrior on
    :math:`z_2` can share it (its components are :math:`q(z_2|u_k)`)."""

    def __init__(self, f1: nn.Module, f2: nn.Module, head: nn.Linear, latent_dim: int):
        super().__init__()
        self.f1, self.f2, self.head = f1, f2, head
        self.latent_dim = latent_dim

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, DiagonalGaussian]:
        """``(h1, q(z2|x))``."""
        h1 = self.f1(x)
        return h1, DiagonalGaussian(*_gaussian(self.head(self.f2(h1))))

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        return self.features(x)[1]


class HierarchicalVAE(LatentVariableModel):
    """What both two-level models share: the generative side and the bookkeeping.

    Subclasses implement ``_infer(x, k)``, returning ``z1``, ``z2``, ``log_q1``, ``log_q2``
    (``(B, .)`` or ``(k, B, .)``) and the single-sample KL terms when ``k`` is None.
    """

    def __init__(self, p_z1_net: nn.Module, decoder, prior: Prior, latent_dim: int,
                 top_latent_dim: int, decoder_uses_top: bool):
        super().__init__()
        self.p_z1_net = p_z1_net  # z2 -> (mu_p, log_var_p) of p(z1|z2)
        self.decoder = decoder
        self.prior = prior
        self.latent_dim, self.top_latent_dim = latent_dim, top_latent_dim
        self.decoder_uses_top = decoder_uses_top
        if prior.latent_dim != top_latent_dim:
            raise ValueError(f"prior.latent_dim ({prior.latent_dim}) must equal "
                             f"top_latent_dim ({top_latent_dim}): the prior is on z2")

    @property
    def kl_groups(self) -> dict[str, int]:
        """KL term -> the number of latent dimensions it covers (free bits per level)."""
        return {"kl_z1": self.latent_dim, "kl_z2": self.top_latent_dim}

    def p_z1(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(mu_p, log_var_p)`` of :math:`p(z_1|z_2)` (log-variance bounded, LOG_VAR_BOUND)."""
        return _prior_gaussian(self.p_z1_net(z2))

    def _decoder_input(self, z1, z2):
        return torch.cat([z1, z2], dim=-1) if self.decoder_uses_top else z1

    def _log_p_z2(self, z2: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(z2.reshape(-1, z2.shape[-1])).reshape(z2.shape[:-1])

    def _kl_z2(self, q2: DiagonalGaussian, z2: torch.Tensor, log_q2: torch.Tensor):
        """Closed form against a standard prior, else the estimate at the sampled z2."""
        kl = analytic_kl(q2, self.prior)
        return log_q2 - self._log_p_z2(z2) if kl is None else kl

    @follows_device
    def bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example ELBO and its terms ``(B,)``: ``elbo = rec - kl``, ``kl = kl_z1 + kl_z2``
        (each a one-sample estimate over the latents it conditions on)."""
        self.decoder.validate(x)
        z1, z2, kl_z1, kl_z2 = self._infer(x, None)[:4]
        rec = self.decoder.log_prob(x, self._decoder_input(z1, z2))
        kl = kl_z1 + kl_z2
        return {"elbo": rec - kl, "rec": rec, "kl": kl, "kl_z1": kl_z1, "kl_z2": kl_z2}

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """:meth:`bound`'s terms and the training objective ``loss = -(rec - beta * kl)``."""
        terms = self.bound(x)
        return {"loss": -(terms["rec"] - beta * terms["kl"]), **terms}

    @follows_device
    def log_weight_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        r"""For ``k`` draws of both levels from the posterior, the shares of
        :math:`\ln p(x, z_1, z_2) - \ln q(z_1, z_2|x)`, each ``(B, k)``: ``rec`` =
        :math:`\ln p(x|z_1[, z_2])`, ``kl_z1`` = :math:`\ln q(z_1|\cdot) - \ln p(z_1|z_2)`,
        ``kl_z2`` = :math:`\ln q(z_2|\cdot) - \ln p(z_2)` and ``kl`` their sum."""
        self.decoder.validate(x)
        z1, z2, log_q1, log_q2 = self._infer(x, k)
        mu_p, log_var_p = self.p_z1(z2)
        rec = self.decoder.log_prob(x, self._decoder_input(z1, z2))
        kl_z1 = log_q1 - log_normal_diag(z1, mu_p, log_var_p)
        kl_z2 = log_q2 - self._log_p_z2(z2)
        return {"rec": rec.T, "kl": (kl_z1 + kl_z2).T, "kl_z1": kl_z1.T, "kl_z2": kl_z2.T}

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, z2: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` observations by ancestral sampling: ``z2 ~ p(z2)`` (or the given ``(n, L2)``
        ``z2``), ``z1 ~ p(z1|z2)``, ``x ~ p(x|z1[, z2])`` (or its mean)."""
        check_int(n, "n", minimum=1)
        if z2 is None:
            z2 = self.prior.sample(n)
        elif z2.shape != (n, self.top_latent_dim):
            raise ValueError(f"z2 must have shape ({n}, {self.top_latent_dim}), got "
                             f"{tuple(z2.shape)}")
        mu_p, log_var_p = self.p_z1(z2)
        z1 = mu_p + torch.exp(0.5 * log_var_p) * torch.randn_like(mu_p)
        h = self._decoder_input(z1, z2)
        return self.decoder.mean(h) if mean else self.decoder.sample(h)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Decode the posterior means of both levels."""
        m = self.posterior_means(x)
        h = self._decoder_input(m["z1"], m["z2"])
        return self.decoder.mean(h) if mean else self.decoder.sample(h)


class TwoLevelVAE(HierarchicalVAE):
    r"""Bottom-up inference :math:`q(z_1|x)\,q(z_2|z_1[, x])` (see the module docstring).

    Args:
        q_z1_net: ``x -> (mu, log_var)`` of :math:`q(z_1|x)`, ``(B, 2 L1)``.
        q_z2_net: ``[z1, x'] -> (mu, log_var)`` of :math:`q(z_2|z_1, x)` (``x'`` the rescaled
            input, only when ``top_posterior_sees_x``).
        input_layer: the rescaling of ``x`` fed to ``q_z2_net``.
        p_z1_net, decoder, prior, latent_dim, top_latent_dim, decoder_uses_top: as
            :class:`HierarchicalVAE`.
    """

    def __init__(self, q_z1_net, q_z2_net, input_layer, p_z1_net, decoder, prior,
                 latent_dim, top_latent_dim, top_posterior_sees_x=True, decoder_uses_top=False):
        super().__init__(p_z1_net, decoder, prior, latent_dim, top_latent_dim, decoder_uses_top)
        self.q_z1_net, self.q_z2_net, self.input_layer = q_z1_net, q_z2_net, input_layer
        self.top_posterior_sees_x = top_posterior_sees_x

    def q_z1(self, x) -> DiagonalGaussian:
        return DiagonalGaussian(*_gaussian(self.q_z1_net(x)))

    def q_z2(self, z1, x) -> DiagonalGaussian:
        inputs = z1
        if self.top_posterior_sees_x:
            inputs = torch.cat([z1, _expand(self.input_layer(x), None if z1.dim() == 2
                                            else z1.shape[0])], dim=-1)
        return DiagonalGaussian(*_gaussian(self.q_z2_net(inputs)))

    def _infer(self, x, k):
        q1 = self.q_z1(x)
        z1, log_q1 = q1.rsample(k)
        q2 = self.q_z2(z1, x)
        z2, log_q2 = q2.rsample()  # one z2 per z1
        if k is not None:
            return z1, z2, log_q1, log_q2
        mu_p, log_var_p = self.p_z1(z2)
        # kl_z1 = ln q(z1|x) - ln p(z1|z2): p(z1|z2) depends on the sampled z2, so a
        # one-sample estimate; kl_z2 is exact given z1 (closed form for a standard prior).
        kl_z1 = log_q1 - log_normal_diag(z1, mu_p, log_var_p)
        return z1, z2, kl_z1, self._kl_z2(q2, z2, log_q2)

    @torch.no_grad()
    @follows_device
    def posterior_means(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Per level: :math:`\mathbb{E}[z_1|x]` and the mean of :math:`q(z_2 \mid \mathbb{E}[z_1|x], x)`."""
        mu1 = self.q_z1(x).mean
        return {"z1": mu1, "z2": self.q_z2(mu1, x).mean}


class TopDownVAE(HierarchicalVAE):
    r"""Top-down inference :math:`q(z_2|x)\,q(z_1|x,z_2)` with the relative parameterisation
    of :math:`q(z_1|x,z_2)` around the prior :math:`p(z_1|z_2)` (module docstring).

    Args:
        top_encoder: :class:`TopEncoder`, giving ``h1`` and :math:`q(z_2|x)`.
        top_down: ``z2 -> d``, the shared top-down path.
        p_head: ``d -> (mu_p, log_var_p)`` of :math:`p(z_1|z_2)`.
        q_head: ``[h1, d] -> (Delta mu, ln Delta sigma^2)``.
        decoder, prior, latent_dim, top_latent_dim, decoder_uses_top: as
            :class:`HierarchicalVAE`.
    """

    def __init__(self, top_encoder: TopEncoder, top_down: nn.Module, p_head: nn.Module,
                 q_head: nn.Module, decoder, prior, latent_dim, top_latent_dim,
                 decoder_uses_top=False):
        super().__init__(nn.Sequential(top_down, p_head), decoder, prior, latent_dim,
                         top_latent_dim, decoder_uses_top)
        self.top_encoder, self.top_down, self.p_head, self.q_head = (top_encoder, top_down,
                                                                     p_head, q_head)

    def _level1(self, h1, z2):
        """``(mu_p, log_var_p, delta_mu, delta_log_var)`` for ``z2`` ``(B, L2)`` or ``(k, B, L2)``."""
        d = self.top_down(z2)
        mu_p, log_var_p = _prior_gaussian(self.p_head(d))
        h = _expand(h1, None if z2.dim() == 2 else z2.shape[0])
        delta_mu, delta_log_var = _gaussian(self.q_head(torch.cat([h, d], dim=-1)))
        return mu_p, log_var_p, delta_mu, delta_log_var

    def _infer(self, x, k):
        h1, q2 = self.top_encoder.features(x)
        z2, log_q2 = q2.rsample(k)
        mu_p, log_var_p, delta_mu, delta_log_var = self._level1(h1, z2)
        q1 = DiagonalGaussian(mu_p + delta_mu, log_var_p + delta_log_var)
        z1, log_q1 = q1.rsample()  # one z1 per z2
        if k is not None:
            return z1, z2, log_q1, log_q2
        kl_z1 = relative_kl(delta_mu, delta_log_var, log_var_p)
        return z1, z2, kl_z1, self._kl_z2(q2, z2, log_q2)

    @torch.no_grad()
    @follows_device
    def posterior_means(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Per level: :math:`\mathbb{E}[z_2|x]` and the mean of :math:`q(z_1 \mid x, \mathbb{E}[z_2|x])`."""
        h1, q2 = self.top_encoder.features(x)
        mu_p, _, delta_mu, _ = self._level1(h1, q2.mean)
        return {"z1": mu_p + delta_mu, "z2": q2.mean}


def relative_kl(delta_mu: torch.Tensor, delta_log_var: torch.Tensor,
                log_var_p: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}[\mathcal{N}(\mu_p+\Delta\mu, \sigma_p^2\Delta\sigma^2)\,\|\,\mathcal{N}(\mu_p, \sigma_p^2)]
    = \frac12\sum_l \big(\Delta\mu_l^2/\sigma_{p,l}^2 + \Delta\sigma_l^2 - \ln\Delta\sigma_l^2 - 1\big)`:
    the general Gaussian KL (:func:`~intro_dgm.distributions.kl_normal_diag`) with the
    prior's mean cancelled and its variance left only under :math:`\Delta\mu`."""
    return 0.5 * (delta_mu ** 2 * torch.exp(-log_var_p) + torch.exp(delta_log_var)
                  - delta_log_var - 1.0).sum(-1)


# ------------------------------------------------------------------------- configs
@dataclass
class _HierarchicalConfig(DataFields):
    latent_dim: int = 16
    top_latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    top_hidden: tuple[int, ...] = (64,)
    decoder_hidden: tuple[int, ...] | None = None
    decoder_uses_top: bool = False
    prior: str = "standard"
    prior_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()  # the data fields
        check_int(self.latent_dim, "latent_dim", minimum=1)
        check_int(self.top_latent_dim, "top_latent_dim", minimum=1)
        self.hidden = check_sizes(self.hidden, "hidden", allow_empty=False)
        self.top_hidden = check_sizes(self.top_hidden, "top_hidden", allow_empty=False)
        if self.decoder_hidden is not None:  # () is allowed: a linear (weak) decoder
            self.decoder_hidden = check_sizes(self.decoder_hidden, "decoder_hidden")
        if self.prior not in TOP_PRIORS:
            raise ValueError(f"prior (of the top level z2) must be one of "
                             f"{', '.join(TOP_PRIORS)}; got {self.prior!r}")
        if not isinstance(self.prior_kwargs, dict):
            raise TypeError(f"prior_kwargs must be a dict, got {type(self.prior_kwargs).__name__}")


@dataclass
class TwoLevelConfig(_HierarchicalConfig):
    """Hyperparameters of :func:`build_two_level` (``latent_dim`` is :math:`L_1`, the bottom
    level; ``top_latent_dim`` :math:`L_2`; ``hidden`` the x-side networks, ``top_hidden`` the
    networks between latents; ``decoder_hidden`` the decoder's layers (``None``: ``hidden``
    reversed, as the VAE's; ``()``: a linear decoder); ``top_posterior_sees_x``: :math:`q(z_2|z_1,x)` (4.76) or
    :math:`q(z_2|z_1)` (4.77))."""

    top_posterior_sees_x: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.prior != "standard":
            raise ValueError(f"prior {self.prior!r} on z2 is built from q(z2|x), which the "
                             "bottom-up two-level VAE does not have (its q(z2|z1, x) needs z1); "
                             "use the top-down model (model='top-down') for a VampPrior on z2")


@dataclass
class TopDownConfig(_HierarchicalConfig):
    """Hyperparameters of :func:`build_top_down` (fields as :class:`TwoLevelConfig`; ``prior``
    may be ``vampprior``: the hierarchical VampPrior, with ``decoder_uses_top=True`` as in
    Tomczak & Welling, 2018)."""


def _input_layer(c) -> nn.Module:
    return nn.Identity() if c.likelihood == "gaussian" else Rescale(c.num_vals)


def _decoder(c):
    in_dim = c.latent_dim + (c.top_latent_dim if c.decoder_uses_top else 0)
    hidden = c.hidden[::-1] if c.decoder_hidden is None else c.decoder_hidden
    return make_decoder(c.likelihood, in_dim, hidden, c.input_dim, c.num_vals)


def build_two_level(config: TwoLevelConfig) -> TwoLevelVAE:
    """The bottom-up two-level VAE: MLPs with ``hidden`` units on the x side, ``top_hidden``
    between the latents, LeakyReLU; the standard Gaussian on z2."""
    check_config(config, TwoLevelConfig, "build_two_level's config")
    c = config
    L1, L2 = c.latent_dim, c.top_latent_dim
    top_in = L1 + (c.input_dim if c.top_posterior_sees_x else 0)
    return TwoLevelVAE(
        q_z1_net=nn.Sequential(_input_layer(c), mlp(c.input_dim, c.hidden, 2 * L1)),
        q_z2_net=mlp(top_in, c.top_hidden, 2 * L2), input_layer=_input_layer(c),
        p_z1_net=mlp(L2, c.top_hidden, 2 * L1), decoder=_decoder(c), prior=StandardPrior(L2),
        latent_dim=L1, top_latent_dim=L2, top_posterior_sees_x=c.top_posterior_sees_x,
        decoder_uses_top=c.decoder_uses_top)


def build_top_down(config: TopDownConfig) -> TopDownVAE:
    """The top-down VAE: the bottom-up path ``x -> hidden`` (``h1``, width ``hidden[-1]``)
    ``-> top_hidden[-1]`` (``h2``); the top-down path ``z2 -> top_hidden`` (``d``); linear heads
    for q(z2|x), p(z1|z2) and q(z1|x, z2) relative to it; the decoder as the VAE's.
    ``prior='vampprior'`` puts a VampPrior on z2, sharing the bottom-up path; with
    ``prior_kwargs={'init': 'data'}`` call ``model.initialise_from_data(train)`` next."""
    check_config(config, TopDownConfig, "build_top_down's config")
    c = config
    L1, L2 = c.latent_dim, c.top_latent_dim
    width, top_width = c.hidden[-1], c.top_hidden[-1]
    f1 = nn.Sequential(_input_layer(c), mlp(c.input_dim, c.hidden[:-1], width), nn.LeakyReLU())
    f2 = nn.Sequential(nn.Linear(width, top_width), nn.LeakyReLU())
    top_encoder = TopEncoder(f1, f2, nn.Linear(top_width, 2 * L2), L2)
    top_down = nn.Sequential(mlp(L2, c.top_hidden[:-1], top_width), nn.LeakyReLU())
    kwargs = dict(c.prior_kwargs)
    if c.prior == "vampprior" and c.likelihood != "gaussian":
        kwargs.setdefault("input_range", (0.0, float(c.num_vals - 1)))
    prior = make_prior(c.prior, L2, encoder=top_encoder, input_dim=c.input_dim, **kwargs)
    q_head = nn.Linear(width + top_width, 2 * L1)
    # zero: q(z1|x, z2) starts at the prior p(z1|z2) (Delta mu = 0, Delta sigma = 1), so the
    # level-1 KL starts at 0 and the posterior learns only what the data ask of it
    nn.init.zeros_(q_head.weight)
    nn.init.zeros_(q_head.bias)
    return TopDownVAE(top_encoder, top_down, nn.Linear(top_width, 2 * L1), q_head,
                      _decoder(c), prior, L1, L2, c.decoder_uses_top)

