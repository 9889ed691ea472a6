r"""Decoders :math:`p_\theta(x|z)`: the likelihood of an observation given a latent code.

Every decoder is an ``nn.Module`` with ``log_prob(x, z) -> (...)`` (``z`` of shape ``(..., L)``
against ``x`` of shape ``(B, D)``, broadcasting over leading sample dimensions),
``sample(z)``, ``mean(z)`` and ``validate(x)``, which raises a clear error when ``x`` is not
a valid observation for that likelihood (e.g. a value 17 for 17 categories 0..16).

:func:`make_decoder` builds the book's MLP decoders by the name of their likelihood and
refuses a combination that cannot work (a Bernoulli decoder for 17-valued pixels).
"""
from __future__ import annotations

import torch
from torch import nn

from .data import check_likelihood
from .distributions import log_bernoulli, log_categorical, log_normal_diag
from .nets import mlp
from .utils import Registry, check_int, check_tensor


def check_pixels(x: torch.Tensor, num_vals: int, dim: int) -> None:
    """Raise a clear error unless ``x`` is ``(B, dim)`` of integer values ``0..num_vals-1``."""
    check_tensor(x, "x", ndim=2, last_dim=dim)
    bad = (x < 0) | (x > num_vals - 1) | (x != torch.round(x))
    if bad.any():
        v = x[bad][0].item()
        raise ValueError(f"x must hold integer pixel values in 0..{num_vals - 1} "
                         f"(num_vals={num_vals}); found {v}")


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
        check_pixels(x, self.num_vals, self.dim)

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


#: likelihood name -> decoder class (the ``likelihood`` field of a model config): one decoder
#: for each of the likelihoods the data layer knows (:data:`~intro_dgm.data.LIKELIHOODS`).
DECODERS = Registry("likelihood", {"categorical": CategoricalDecoder,
                                   "bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder})


def make_decoder(likelihood: str, latent_dim: int, hidden, input_dim: int,
                 num_vals: int) -> Decoder:
    """The book's MLP decoder ``latent_dim -> hidden -> ...`` for one of :data:`DECODERS`
    (the likelihood checked against the data by :func:`~intro_dgm.data.check_likelihood`)."""
    DECODERS.lookup(likelihood)  # the registry's message for an unknown name
    check_likelihood(likelihood, num_vals)
    hidden = tuple(hidden)
    if likelihood == "categorical":
        return CategoricalDecoder(mlp(latent_dim, hidden, input_dim * num_vals), input_dim,
                                  num_vals)
    cls = DECODERS[likelihood]
    return cls(mlp(latent_dim, hidden, input_dim), input_dim)
