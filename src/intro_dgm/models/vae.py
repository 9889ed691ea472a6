"""The Variational Auto-Encoder (chapter: the VAE).

    ln p(x) >= ELBO(x) = E_{q(z|x)}[ln p(x|z)] - KL[q(z|x) || p(z)]

``VAE(encoder, decoder, prior)`` wires three swappable parts together: the encoder returns
a posterior object (:mod:`intro_dgm.posteriors`), the decoder is a likelihood
(:mod:`intro_dgm.decoders`), the prior any of :mod:`intro_dgm.priors`. Its ``loss(x)``
returns per-example terms with the package-wide sign convention ``kl = ln q - ln p`` and
``elbo = rec - kl``; ``log_weight_terms(x, k)`` gives the importance log-weights
``ln p(x, z_s) - ln q(z_s | x)`` split into ``rec`` and ``kl``, which
:mod:`intro_dgm.evaluation` turns into the importance-weighted bound and the ELBO.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import DataFields
from ..decoders import Decoder, make_decoder
from ..encoders import POSTERIORS, make_encoder
from ..nets import Rescale
from ..posteriors import Posterior, analytic_kl, has_analytic_kl
from ..priors import PRIORS, Prior, StandardPrior, make_prior
from ..utils import check_config, check_int, check_sizes
from .base import LatentVariableModel, follows_device


class VAE(LatentVariableModel):
    """A VAE from three parts: ``VAE(encoder, decoder, prior)``; the prior defaults to N(0, I).

    The KL term is the closed form when the posterior family and the prior have one
    (:func:`~intro_dgm.posteriors.analytic_kl`), else the single-sample Monte Carlo estimate
    ``ln q(z|x) - ln p(z)`` at the very ``z`` that the reconstruction term uses;
    :attr:`kl_is_analytic` says which. The encoder maps ``x`` to a posterior object and names
    its family in ``posterior_cls``.
    """

    def __init__(self, encoder: nn.Module, decoder: Decoder, prior: Prior | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior if prior is not None else StandardPrior(encoder.latent_dim)
        if self.prior.latent_dim != encoder.latent_dim:
            raise ValueError(f"prior.latent_dim ({self.prior.latent_dim}) must equal "
                             f"encoder.latent_dim ({encoder.latent_dim})")

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @follows_device
    def posterior(self, x: torch.Tensor) -> Posterior:
        """``q(z|x)`` for a batch ``x`` of shape ``(B, D)`` (validated against the decoder)."""
        self.decoder.validate(x)
        return self.encoder(x)

    @property
    def kl_groups(self) -> dict[str, int]:
        """KL term -> the latent dimensions it covers (for free bits): one group."""
        return {"kl": self.latent_dim}

    @torch.no_grad()
    def posterior_means(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The posterior's point summary per level (one level, ``"z"``): the active units."""
        return {"z": self.posterior(x).mean}

    @property
    def kl_is_analytic(self) -> bool:
        """Whether ``loss`` uses a closed-form KL (decided by the posterior and prior types)."""
        return has_analytic_kl(self.encoder.posterior_cls, self.prior)

    @follows_device
    def bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example ELBO and its terms, each ``(B,)``: ``{"elbo": rec - kl, "rec": ln p(x|z),
        "kl": KL}``; ``rec`` is a one-sample estimate, ``kl`` is exact when the posterior and
        prior have a closed form (:attr:`kl_is_analytic`), else estimated at the same ``z``."""
        q = self.posterior(x)
        z, log_q = q.rsample()
        rec = self.decoder.log_prob(x, z)
        kl = analytic_kl(q, self.prior)
        if kl is None:
            kl = log_q - self.prior.log_prob(z)
        return {"elbo": rec - kl, "rec": rec, "kl": kl}

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """:meth:`bound`'s terms and the training objective ``loss = -(rec - beta * kl)``
        (``beta`` < 1 during a KL warm-up)."""
        terms = self.bound(x)
        return {"loss": -(terms["rec"] - beta * terms["kl"]), **terms}

    @follows_device
    def log_weight_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        r"""For ``k`` = S draws :math:`z_s \sim q(z|x)`, the shares of the importance log-weight
        :math:`\ln\omega_s = \ln p(x|z_s) - [\ln q(z_s|x) - \ln p(z_s)]`: ``{"rec", "kl"}``,
        each ``(B, k)`` (``kl`` a one-draw estimate, never the closed form: the terms must add
        up to the log-weight draw by draw)."""
        z, log_q = self.posterior(x).rsample(k)  # (k, B, L), (k, B)
        log_px_given_z = self.decoder.log_prob(x, z)  # (k, B)
        log_pz = self.prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2])
        return {"rec": log_px_given_z.transpose(0, 1), "kl": (log_q - log_pz).transpose(0, 1)}

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` new observations: ``z ~ p(z)``, then ``x ~ p(x|z)`` (or its mean)."""
        z = self.prior.sample(n)
        return self.decoder.mean(z) if mean else self.decoder.sample(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Decode the posterior's point summary ``q.mean``: the decoder's mean (or a sample)."""
        z = self.posterior(x).mean
        return self.decoder.mean(z) if mean else self.decoder.sample(z)


@dataclass
class VAEConfig(DataFields):
    """Hyperparameters of :func:`build_vae` (a plain record: saved with every checkpoint).

    The data fields ``input_dim``, ``num_vals`` and ``likelihood`` come from
    :class:`~intro_dgm.data.DataFields` (the protocol fills them from the data set).
    ``prior`` names one of :data:`~intro_dgm.priors.PRIORS`, ``prior_kwargs`` its options;
    ``posterior`` one of :data:`~intro_dgm.encoders.POSTERIORS`, ``posterior_kwargs`` its
    options (e.g. ``num_steps``).
    """

    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    posterior: str = "gaussian"
    prior: str = "standard"
    prior_kwargs: dict = field(default_factory=dict)
    posterior_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()  # the data fields
        check_int(self.latent_dim, "latent_dim", minimum=1)
        self.hidden = check_sizes(self.hidden, "hidden")
        POSTERIORS.lookup(self.posterior)  # a clear error for an unknown name
        PRIORS.lookup(self.prior)
        # A vMF posterior lives on the sphere, every other prior in R^L: their KL would be
        # infinite (or undefined), so the pairing is checked here rather than failing later.
        if (self.posterior == "vmf") != (self.prior == "uniform-sphere"):
            raise ValueError(f"posterior 'vmf' and prior 'uniform-sphere' go together (z on the "
                             f"unit sphere); got posterior={self.posterior!r}, prior={self.prior!r}")
        if self.posterior == "vmf" and self.latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for a vMF posterior (the sphere S^{{L-1}} "
                             f"with L = {self.latent_dim} has dimension {self.latent_dim - 1})")
        for name in ("prior_kwargs", "posterior_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")


def build_vae(config: VAEConfig) -> VAE:
    """The book's VAE: MLP encoder and decoder with ``config.hidden`` units, LeakyReLU.

    ``config.prior`` names a prior in ``PRIORS`` and ``config.prior_kwargs`` holds its options
    (e.g. ``num_components``). A prior initialised from data (``prior_kwargs["init"] ==
    "data"``, VampPrior) is built with placeholder pseudo-inputs: call
    ``model.initialise_from_data(train)`` next, as :func:`~intro_dgm.protocol.run` does (the
    prior is built last, so that draw comes where it always did in the random stream).
    """
    check_config(config, VAEConfig, "build_vae's config")
    c = config
    enc_in: nn.Module = nn.Identity() if c.likelihood == "gaussian" else Rescale(c.num_vals)
    encoder = make_encoder(c.posterior, enc_in, c.input_dim, c.hidden, c.latent_dim,
                           **c.posterior_kwargs)
    decoder = make_decoder(c.likelihood, c.latent_dim, c.hidden[::-1], c.input_dim, c.num_vals)
    kwargs = dict(c.prior_kwargs)
    if PRIORS[c.prior].uses_encoder and c.likelihood != "gaussian":
        kwargs.setdefault("input_range", (0.0, float(c.num_vals - 1)))
    prior = make_prior(c.prior, c.latent_dim, encoder=encoder, input_dim=c.input_dim, **kwargs)
    return VAE(encoder, decoder, prior)
