"""Models. Each is built from a config dataclass by a ``build_*`` function listed in MODELS.

:class:`~intro_dgm.models.ppca.PPCA` is not in the registry on purpose: it is fitted in closed form (no ``fit``
loop, no early stopping) and its density is over real-valued vectors, so its numbers are
not in nats of the discrete pixels the registered models are measured on. Chapters 1 and 2
compare it with the VAE by hand, where the comparison is meaningful.
"""
from .ppca import PPCA
from ..encoders import GaussianEncoder
from .diffusion import DDGM, DiffusionConfig, build_ddgm
from .flow_model import FlowModelConfig, RealNVPModel, build_realnvp
from .hierarchical import (TopDownConfig, TopDownVAE, TwoLevelConfig, TwoLevelVAE,
                           build_top_down, build_two_level)
from .vae import VAE, VAEConfig, build_vae

#: The registered models, name -> (config class, builder), known to the CLI's ``--model``,
#: the run protocol and the checkpoints. ``builder(config, data=None)`` builds the model;
#: ``data`` is the training set, passed only when the config's ``needs_data`` is true.
MODELS = {"vae": (VAEConfig, build_vae), "two-level": (TwoLevelConfig, build_two_level),
          "top-down": (TopDownConfig, build_top_down), "ddgm": (DiffusionConfig, build_ddgm),
          "realnvp": (FlowModelConfig, build_realnvp)}


def config_from_dict(name: str, fields: dict):
    """The config object of model ``name`` from a dict of its fields (lists become tuples
    where the field is a tuple); unknown fields are a clear error."""
    import dataclasses

    from ..utils import check_fields

    config_cls = model_entry(name)[0]
    check_fields(config_cls, fields, f"{name!r} model config")
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple) else v
              for k, v in fields.items()}
    return config_cls(**values)


def model_entry(name: str):
    """``(config class, builder)`` of a registered model; a clear error for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]


def build_model(name: str, config, data=None):
    """Build a model by name from a config object or a dict of its fields."""
    config_cls, builder = model_entry(name)
    if isinstance(config, dict):
        config = config_from_dict(name, config)
    elif not isinstance(config, config_cls):
        raise TypeError(f"config must be a {config_cls.__name__} or a dict, "
                        f"got {type(config).__name__}")
    return builder(config, data=data)


__all__ = ["PPCA", "VAE", "VAEConfig", "build_vae", "GaussianEncoder", "MODELS",
           "TwoLevelVAE", "TwoLevelConfig", "build_two_level", "TopDownVAE", "TopDownConfig",
           "build_top_down", "DDGM", "DiffusionConfig", "build_ddgm",
           "RealNVPModel", "FlowModelConfig", "build_realnvp",
           "build_model", "config_from_dict", "model_entry"]
