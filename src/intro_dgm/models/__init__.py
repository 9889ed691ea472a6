"""Models. Each is built from a config dataclass by a ``build_*`` function listed in MODELS."""
from .ppca import PPCA
from .vae import (VAE, BernoulliDecoder, CategoricalDecoder, Decoder, GaussianDecoder,
                  GaussianEncoder, VAEConfig, build_vae)

#: name -> (config class, builder): what the CLI's ``--model`` and checkpoints know.
MODELS = {"vae": (VAEConfig, build_vae)}


def build_model(name: str, config):
    """Build a model by name from a config object or a dict of its fields."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    config_cls, builder = MODELS[name]
    if isinstance(config, dict):
        config = config_cls(**config)
    return builder(config)


__all__ = ["PPCA", "VAE", "VAEConfig", "build_vae", "GaussianEncoder", "Decoder",
           "CategoricalDecoder", "BernoulliDecoder", "GaussianDecoder", "MODELS", "build_model"]
