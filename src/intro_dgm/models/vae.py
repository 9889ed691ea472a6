"""The Variational Auto-Encoder (chapter: the VAE).

    ln p(x) >= ELBO(x) = E_{q(z|x)}[ln p(x|z)] - KL[q(z|x) || p(z)]

``VAE(encoder, decoder, prior)`` wires three swappable parts together. Its ``loss(x)``
returns per-example terms with the package-wide sign convention
``kl = ln q - ln p`` and ``elbo = rec - kl``; ``log_weights(x, k)`` gives the importance
weights ``ln p(x, z_k) - ln q(z_k | x)`` that :mod:`intro_dgm.evaluation` turns into the
importance-weighted bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..distributions import log_bernoulli, log_categorical, log_normal_diag
from ..nets import Rescale, mlp
from ..priors import PRIORS, Prior, StandardPrior, make_prior
from ..utils import check_int, check_tensor


class GaussianEncoder(nn.Module):
    r"""Amortised posterior :math:`q_\phi(z|x) = \mathcal{N}(z \mid \mu_e(x), \mathrm{diag}\,\sigma_e^2(x))`.

    Args:
        net: maps ``(B, D)`` to ``(B, 2L)``: the first half is ``mu_e``, the second ``log_var_e``.
        latent_dim: ``L``.
    """

    def __init__(self, net: nn.Module, latent_dim: int):
        super().__init__()
        self.net = net
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu_e, log_var_e = self.net(x).chunk(2, dim=-1)
        return mu_e, log_var_e

    @staticmethod
    def sample(mu_e: torch.Tensor, log_var_e: torch.Tensor, k: int | None = None) -> torch.Tensor:
        r"""Reparameterisation :math:`z = \mu_e + \sigma_e \odot \epsilon`, :math:`\epsilon\sim\mathcal{N}(0,I)`.

        With ``k``, returns ``(k, B, L)``: ``k`` samples for every row.
        """
        shape = mu_e.shape if k is None else (k, *mu_e.shape)
        eps = torch.randn(shape, device=mu_e.device, dtype=mu_e.dtype)
        return mu_e + torch.exp(0.5 * log_var_e) * eps  # std = exp(log_var / 2)

    @staticmethod
    def log_prob(z, mu_e, log_var_e) -> torch.Tensor:
        """``ln q(z|x)``, summed over the latent dimension (broadcasts over leading dims)."""
        return log_normal_diag(z, mu_e, log_var_e)


class Decoder(nn.Module):
    """Base class of ``p_theta(x|z)``: ``log_prob(x, z)``, ``sample(z)``, ``mean(z)``."""

    def __init__(self, net: nn.Module, dim: int):
        super().__init__()
        self.net = net
        self.dim = check_int(dim, "dim", minimum=1)

    def validate(self, x: torch.Tensor) -> None:
        """Raise a clear error if ``x`` is not a valid observation for this likelihood."""
        check_tensor(x, "x", ndim=2, last_dim=self.dim)


class CategoricalDecoder(Decoder):
    r"""Each pixel is categorical over ``num_vals`` values: :math:`p(x|z)=\prod_d \mathrm{Cat}(x_d\mid\pi_d(z))`.

    Args:
        net: maps ``(..., L)`` to ``(..., D * num_vals)`` logits.
    """

    def __init__(self, net: nn.Module, dim: int, num_vals: int):
        super().__init__(net, dim)
        self.num_vals = check_int(num_vals, "num_vals", minimum=2)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, (self.dim, self.num_vals))

    def validate(self, x):
        super().validate(x)
        bad = (x < 0) | (x > self.num_vals - 1) | (x != torch.round(x))
        if bad.any():
            v = x[bad][0].item()
            raise ValueError(f"x must hold integer pixel values in 0..{self.num_vals - 1} "
                             f"(num_vals={self.num_vals}); found {v}")

    def log_prob(self, x, z):
        return log_categorical(x, self.logits(z))

    def sample(self, z):
        probs = torch.softmax(self.logits(z), dim=-1)
        flat = torch.multinomial(probs.reshape(-1, self.num_vals), 1)
        return flat.reshape(probs.shape[:-1]).float()

    def mean(self, z):
        probs = torch.softmax(self.logits(z), dim=-1)
        values = torch.arange(self.num_vals, device=z.device, dtype=probs.dtype)
        return probs @ values


class BernoulliDecoder(Decoder):
    r"""Binary pixels: :math:`p(x|z)=\prod_d \mathrm{Bern}(x_d\mid\sigma(\text{logit}_d(z)))`."""

    num_vals = 2

    def validate(self, x):
        super().validate(x)
        if ((x != 0) & (x != 1)).any():
            raise ValueError("x must be binary (0 or 1) for a Bernoulli decoder; "
                             f"found {x[(x != 0) & (x != 1)][0].item()}")

    def log_prob(self, x, z):
        return log_bernoulli(x, self.net(z))

    def sample(self, z):
        return torch.bernoulli(torch.sigmoid(self.net(z)))

    def mean(self, z):
        return torch.sigmoid(self.net(z))


class GaussianDecoder(Decoder):
    r"""Real-valued data: :math:`p(x|z)=\mathcal{N}(x\mid\mu_d(z), \mathrm{diag}\,\sigma^2)`.

    The net gives the mean; the log-variance is one learned vector shared by all ``z``
    (a per-``z`` variance lets the likelihood diverge on a point the decoder fits exactly).
    """

    def __init__(self, net: nn.Module, dim: int, init_log_var: float = 0.0):
        super().__init__(net, dim)
        self.log_var = nn.Parameter(torch.full((dim,), float(init_log_var)))

    def log_prob(self, x, z):
        return log_normal_diag(x, self.net(z), self.log_var)

    def sample(self, z):
        mu = self.net(z)
        return mu + torch.exp(0.5 * self.log_var) * torch.randn_like(mu)

    def mean(self, z):
        return self.net(z)


class VAE(nn.Module):
    """A VAE from three parts: ``VAE(encoder, decoder, prior)``; the prior defaults to N(0, I)."""

    def __init__(self, encoder: GaussianEncoder, decoder: Decoder, prior: Prior | None = None):
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

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-example terms of the negative ELBO, each of shape ``(B,)``.

        Returns:
            ``{"loss": -(rec - beta*kl), "elbo": rec - kl, "rec": ln p(x|z), "kl": KL}``;
            ``rec`` is a one-sample estimate, ``kl`` is exact when the prior has a closed
            form and a one-sample estimate otherwise.
        """
        self.decoder.validate(x)
        mu_e, log_var_e = self.encoder(x)
        z = self.encoder.sample(mu_e, log_var_e)
        rec = self.decoder.log_prob(x, z)
        kl = self.prior.kl(z, mu_e, log_var_e)
        return {"loss": -(rec - beta * kl), "elbo": rec - kl, "rec": rec, "kl": kl}

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        r"""Importance log-weights :math:`\ln p(x, z_k) - \ln q(z_k|x)`, ``z_k ~ q(z|x)``: ``(B, k)``."""
        mu_e, log_var_e = self.encoder(x)
        z = self.encoder.sample(mu_e, log_var_e, k=k)  # (k, B, L)
        log_px_given_z = self.decoder.log_prob(x, z)  # (k, B)
        log_pz = self.prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2])
        log_qz = self.encoder.log_prob(z, mu_e, log_var_e)
        return (log_px_given_z + log_pz - log_qz).transpose(0, 1)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` new observations: ``z ~ p(z)``, then ``x ~ p(x|z)`` (or its mean)."""
        z = self.prior.sample(n)
        return self.decoder.mean(z) if mean else self.decoder.sample(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Decode the posterior mean ``mu_e(x)``: the decoder's mean (or a sample)."""
        self.decoder.validate(x)
        mu_e, _ = self.encoder(x)
        return self.decoder.mean(mu_e) if mean else self.decoder.sample(mu_e)


LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


@dataclass
class VAEConfig:
    """Hyperparameters of :func:`build_vae` (a plain record: saved with every checkpoint)."""

    input_dim: int = 64
    num_vals: int = 17
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    likelihood: str = "categorical"
    prior: str = "standard"
    prior_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        check_int(self.input_dim, "input_dim", minimum=1)
        check_int(self.latent_dim, "latent_dim", minimum=1)
        check_int(self.num_vals, "num_vals", minimum=2)
        self.hidden = tuple(check_int(h, "hidden", minimum=1) for h in self.hidden)
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; "
                             f"got {self.likelihood!r}")


def build_vae(config: VAEConfig, data: torch.Tensor | None = None) -> VAE:
    """The book's VAE: MLP encoder and decoder with ``config.hidden`` units, LeakyReLU.

    Args:
        config: the hyperparameters; ``config.prior`` names a prior in ``PRIORS`` and
            ``config.prior_kwargs`` holds its options (e.g. ``num_components``).
        data: training data ``(N, D)``, needed (and only accepted) when the prior is
            initialised from data (``prior_kwargs["init"] == "data"``, VampPrior).
    """
    c = config
    if c.likelihood == "gaussian":
        enc_in: nn.Module = nn.Identity()
    else:
        enc_in = Rescale(c.num_vals)
    encoder = GaussianEncoder(nn.Sequential(enc_in, mlp(c.input_dim, c.hidden, 2 * c.latent_dim)),
                              c.latent_dim)
    if c.likelihood == "categorical":
        decoder: Decoder = CategoricalDecoder(mlp(c.latent_dim, c.hidden[::-1],
                                                  c.input_dim * c.num_vals),
                                              c.input_dim, c.num_vals)
    elif c.likelihood == "bernoulli":
        decoder = BernoulliDecoder(mlp(c.latent_dim, c.hidden[::-1], c.input_dim), c.input_dim)
    else:
        decoder = GaussianDecoder(mlp(c.latent_dim, c.hidden[::-1], c.input_dim), c.input_dim)
    kwargs = dict(c.prior_kwargs)
    if c.prior in PRIORS and getattr(PRIORS[c.prior], "uses_encoder", False):
        if c.likelihood != "gaussian":
            kwargs.setdefault("input_range", (0.0, float(c.num_vals - 1)))
        if kwargs.get("init") == "data":
            kwargs["data"] = data
            data = None
    if data is not None:  # never accept an argument and then not use it
        raise ValueError("data is only used by a prior initialised from data "
                         "(prior='vampprior', prior_kwargs={'init': 'data'})")
    prior = make_prior(c.prior, c.latent_dim, encoder=encoder, input_dim=c.input_dim, **kwargs)
    return VAE(encoder, decoder, prior)
