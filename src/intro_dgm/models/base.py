r"""The model interface: what every registered model provides, written as code.

A :class:`GenerativeModel` is what :func:`~intro_dgm.training.fit`,
:mod:`~intro_dgm.evaluation`, the run protocol and the widgets talk to. It has

* ``loss(x, beta=1.0)`` -- the **training objective**: a dict of per-example tensors ``(B,)``
  with at least ``"loss"`` (what a step minimises; a stochastic estimate is allowed) and
  ``"elbo"``. It means the same thing in ``train()`` and ``eval()`` mode.
* ``bound(x)`` -- the **evaluation**: the per-example ELBO and its terms, ``{"elbo", "rec",
  "kl", ...}`` with ``elbo = rec - kl`` (the package's sign convention: ``kl = ln q - ln p``);
  early stopping and the test metrics read it. No ``"loss"`` key: nothing is trained on it.
* ``log_weight_terms(x, k)`` -- for ``k`` draws :math:`z_s \sim q(z|x)`, the importance
  log-weight :math:`\ln p(x, z_s) - \ln q(z_s|x)` split into its shares, each ``(B, k)``:
  ``"rec"`` (:math:`\ln p(x|z_s)`) and, for a model with latents, ``"kl"``
  (:math:`\ln q(z_s|x) - \ln p(z_s)`) with its parts ``"kl_<part>"`` (per level, or a
  diffusion model's ``kl_T`` and chain) that add up to it, draw by draw. One pass of
  :func:`~intro_dgm.evaluation.evaluate_bound` turns them into the importance-weighted
  bound, the ELBO and every term, from the same draws; ``log_weights(x, k)`` is their sum;
* ``sample(n, mean=False)`` -- ``n`` new observations (or the decoder's means);
* ``reconstruct(x)`` -- ``x`` sent through the model's code and back;
* ``initialise_from_data(x)`` -- the one step a data-dependent part needs after building
  (a VampPrior's pseudo-inputs drawn from the training images); a no-op by default, so the
  protocol calls it on every model: builders take a config only;
* ``kl_groups`` -- KL term name -> the latent dimensions it covers (free bits floor each
  group); empty for a model without a KL.

Devices follow the model: the methods that take data move it to the model's device first
(:func:`follows_device`).

A :class:`LatentVariableModel` adds a ``prior`` and ``posterior_means(x)`` (level name ->
the posterior's point summary, from which the active units are counted).

A model class joins :data:`~intro_dgm.models.MODELS` through
:func:`~intro_dgm.models.register_model`, which refuses a class that leaves any of these
abstract (the message names the missing method).
"""
from __future__ import annotations

import abc
import functools

import torch
from torch import nn

from ..utils import module_device

#: What every registered model implements (checked at registration).
INTERFACE = ("loss", "bound", "log_weight_terms", "sample", "reconstruct")


def follows_device(method):
    """Decorate a model method whose first argument is data: the data are moved to the
    model's device first (a model trained on a GPU may stay there; a no-op on the same
    device), so a caller never has to know where the model lives."""
    @functools.wraps(method)
    def moved(self, x, *args, **kwargs):
        if isinstance(x, torch.Tensor):
            x = x.to(module_device(self))
        return method(self, x, *args, **kwargs)
    return moved


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every registered model (see the module docstring)."""

    @abc.abstractmethod
    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """The training objective's per-example terms ``(B,)``: ``"loss"``, ``"elbo"``, ..."""

    @abc.abstractmethod
    def bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-example ELBO and its terms ``(B,)``: ``"elbo"``, ``"rec"``, ``"kl"``, ..."""

    @abc.abstractmethod
    def log_weight_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """For ``k`` draws from the posterior, the shares of each importance log-weight,
        ``(B, k)`` each: ``"rec"``, and ``"kl"`` with its parts where the model has latents."""

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``(B, k)`` importance log-weights ``ln p(x, z_s) - ln q(z_s | x) = rec - kl``."""
        terms = self.log_weight_terms(x, k)
        return terms["rec"] - terms["kl"] if "kl" in terms else terms["rec"]

    @abc.abstractmethod
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` new observations ``(n, D)`` (the decoder's means with ``mean=True``)."""

    @abc.abstractmethod
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, D)`` through the model's code and back: ``(B, D)``."""

    @property
    def kl_groups(self) -> dict[str, int]:
        """KL term -> the number of latent dimensions it covers (free bits); none here."""
        return {}

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """Initialise what depends on the training data ``x`` ``(N, D)``; nothing here."""


class LatentVariableModel(GenerativeModel):
    """A model with a learned encoder: a ``prior`` attribute and per-level posterior means."""

    prior: nn.Module

    @abc.abstractmethod
    def posterior_means(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Level name -> ``(B, L)`` posterior means (the active units are counted on them)."""

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """The prior's data-dependent initialisation (a data-initialised VampPrior)."""
        self.prior.initialise_from_data(x)


def check_model_class(name: str, cls) -> None:
    """Raise a clear error unless ``cls`` implements the model interface (registration)."""
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise TypeError(f"model {name!r}: {cls!r} must be a subclass of "
                        "intro_dgm.models.base.GenerativeModel")
    missing = sorted(cls.__abstractmethods__)
    if missing:
        raise TypeError(f"model {name!r}: {cls.__name__} does not implement "
                        f"{', '.join(missing)} (see intro_dgm.models.base)")
