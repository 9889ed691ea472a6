"""Models. Each is built from a config dataclass by a ``build_*`` function, and registered in
:data:`MODELS` with :func:`register_model`.

Every registered model implements the interface of :mod:`intro_dgm.models.base`
(:class:`~intro_dgm.models.base.GenerativeModel`; with a learned encoder,
:class:`~intro_dgm.models.base.LatentVariableModel`): registration refuses a class that does
not, naming the missing method. A builder takes a config only; what the training data
initialises (a VampPrior's pseudo-inputs) is set by ``model.initialise_from_data(train)``.

:class:`~intro_dgm.models.ppca.PPCA` is not in the registry on purpose: it is fitted in closed form (no ``fit``
loop, no early stopping) and its density is over real-valued vectors, so its numbers are
not in nats of the discrete pixels the registered models are measured on. Chapters 1 and 2
compare it with the VAE by hand, where the comparison is meaningful.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from ..encoders import GaussianEncoder
from ..utils import Registry, check_config, check_fields
from .base import GenerativeModel, LatentVariableModel, check_model_class
from .diffusion import DDGM
from .diffusion_config import DiffusionConfig, build_ddgm, ddgm_at_steps
from .flow_model import FlowModelConfig, RealNVPModel, build_realnvp
from .hierarchical import (TopDownConfig, TopDownVAE, TwoLevelConfig, TwoLevelVAE,
                           build_top_down, build_two_level)
from .ppca import PPCA
from .vae import VAE, VAEConfig, build_vae
from .vdm import VDM
from .vdm_config import VDMConfig, build_vdm


class ModelEntry(NamedTuple):
    """A registered model: its config class, its builder ``builder(config) -> model`` and the
    class the builder returns (checked against the interface at registration)."""

    config: type
    builder: Callable
    model: type


def _check_entry(name: str, entry) -> None:
    if not isinstance(entry, ModelEntry):
        raise TypeError(f"model {name!r}: register a ModelEntry(config, builder, model class)")
    if not dataclasses.is_dataclass(entry.config):
        raise TypeError(f"model {name!r}: the config {entry.config!r} must be a dataclass")
    check_model_class(name, entry.model)


#: The registered models, name -> :class:`ModelEntry`, known to the CLI's ``--model``, the
#: run protocol and the checkpoints.
MODELS = Registry("model", check=_check_entry)


def register_model(name: str, config: type, builder: Callable, model: type) -> ModelEntry:
    """Register a model under ``name`` (refused unless ``model`` implements the interface)."""
    return MODELS.register(name, ModelEntry(config, builder, model))


register_model("vae", VAEConfig, build_vae, VAE)
register_model("two-level", TwoLevelConfig, build_two_level, TwoLevelVAE)
register_model("top-down", TopDownConfig, build_top_down, TopDownVAE)
register_model("ddgm", DiffusionConfig, build_ddgm, DDGM)
register_model("realnvp", FlowModelConfig, build_realnvp, RealNVPModel)
register_model("vdm", VDMConfig, build_vdm, VDM)


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of a registered model; a clear error for an unknown name."""
    return MODELS[name]


def config_from_dict(name: str, fields: dict):
    """The config object of model ``name`` from a dict of its fields (lists become tuples
    where the field is a tuple); unknown fields are a clear error."""
    config_cls = model_entry(name).config
    check_fields(config_cls, fields, f"{name!r} model config")
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple) else v
              for k, v in fields.items()}
    return config_cls(**values)


def build_model(name: str, config) -> GenerativeModel:
    """Build a model by name from a config object or a dict of its fields. A data-initialised
    part is a placeholder until ``model.initialise_from_data(train)``."""
    entry = model_entry(name)
    if isinstance(config, dict):
        config = config_from_dict(name, config)
    check_config(config, entry.config, f"config of model {name!r}")
    return entry.builder(config)


__all__ = ["PPCA", "VAE", "VAEConfig", "build_vae", "GaussianEncoder", "MODELS", "ModelEntry",
           "GenerativeModel", "LatentVariableModel", "register_model",
           "TwoLevelVAE", "TwoLevelConfig", "build_two_level", "TopDownVAE", "TopDownConfig",
           "build_top_down", "DDGM", "DiffusionConfig", "build_ddgm", "ddgm_at_steps",
           "RealNVPModel", "FlowModelConfig", "build_realnvp", "VDM", "VDMConfig", "build_vdm",
           "build_model", "config_from_dict", "model_entry"]
