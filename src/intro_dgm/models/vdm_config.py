"""The continuous-time diffusion model's configuration and builder: :class:`VDMConfig` and
:func:`build_vdm`, which turns it into a :class:`~intro_dgm.models.vdm.VDM`."""
from __future__ import annotations

from dataclasses import dataclass

from ..data import DataFields
from ..decoders import CategoricalDecoder
from ..nets import mlp
from ..utils import check_bool, check_choice, check_config, check_int, check_sizes
from .vdm import DATA_TERMS, SHAPES, VDM


@dataclass
class VDMConfig(DataFields):
    r"""Hyperparameters of :func:`build_vdm` (CLI: ``--model vdm``).

    ``log_snr_max``/``log_snr_min``: the log-SNR at t = 0 (the data end) and t = 1 (the
    noise end), learned when ``learn_ends``; ``schedule_shape`` one of :data:`SHAPES`;
    ``data_term`` one of :data:`DATA_TERMS`; ``hidden`` the noise network's layers (and the
    categorical decoder's); ``fourier``: Fourier features of :math:`z_t` at the pixel-bin
    frequencies; ``embedding_dim`` the log-SNR embedding; ``steps`` T of the discretisation
    behind early stopping, the stored ELBO and importance-weighted NLL and the samples
    (training minimises the continuous bound). Discrete pixels only
    (``likelihood`` categorical or bernoulli).
    """

    log_snr_max: float = 4.0
    log_snr_min: float = -10.0
    learn_ends: bool = True
    schedule_shape: str = "linear"
    data_term: str = "categorical"
    hidden: tuple[int, ...] = (512, 512)
    fourier: bool = True
    embedding_dim: int = 32
    steps: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.likelihood == "gaussian":
            raise ValueError("the continuous-time model needs discrete pixels (likelihood "
                             "'categorical' or 'bernoulli'), got likelihood='gaussian'")
        for name in ("log_snr_max", "log_snr_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not self.log_snr_max > self.log_snr_min:
            raise ValueError(f"log_snr_max must exceed log_snr_min, got {self.log_snr_max} "
                             f"and {self.log_snr_min}")
        check_bool(self.learn_ends, "learn_ends")
        check_bool(self.fourier, "fourier")
        check_choice(self.schedule_shape, "schedule_shape", SHAPES)
        check_choice(self.data_term, "data_term", DATA_TERMS)
        self.hidden = check_sizes(self.hidden, "hidden")
        check_int(self.embedding_dim, "embedding_dim", minimum=2)
        if self.embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even, got {self.embedding_dim}")
        check_int(self.steps, "steps", minimum=1)


def build_vdm(config: VDMConfig) -> VDM:
    """The continuous-time model of ``config``: an MLP (LeakyReLU) noise network on
    ``[z_t, its Fourier features, the log-SNR embedding]``; with ``data_term='categorical'``
    an MLP decoder on :math:`z_0`."""
    check_config(config, VDMConfig, "build_vdm's config")
    c = config
    D = c.input_dim
    inputs = D * (5 if c.fourier else 1) + c.embedding_dim
    decoder = (CategoricalDecoder(mlp(D, c.hidden, D * c.num_vals), D, c.num_vals)
               if c.data_term == "categorical" else None)
    return VDM(mlp(inputs, c.hidden, D), D, c.num_vals, c.log_snr_max, c.log_snr_min,
               c.learn_ends, c.schedule_shape, decoder, c.fourier, c.embedding_dim, c.steps)
