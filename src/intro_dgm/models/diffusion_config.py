"""The diffusion model's configuration and builder: :class:`DiffusionConfig` (a plain record,
saved with every checkpoint) and :func:`build_ddgm`, which turns it into a
:class:`~intro_dgm.models.diffusion.DDGM`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import DataFields
from ..decoders import CategoricalDecoder
from ..nets import mlp
from ..utils import check_choice, check_config, check_int, check_sizes
from .diffusion import DATA_TERMS, DDGM, ESTIMATORS, OBJECTIVES, STEP_SAMPLING, VARIANCES
from .schedules import make_betas


@dataclass
class DiffusionConfig(DataFields):
    r"""Hyperparameters of :func:`build_ddgm` (CLI: ``--model ddgm --steps T --schedule ...
    --objective elbo|simple``).

    ``steps`` T; ``schedule`` one of :data:`SCHEDULES` with ``beta_1``/``beta_T`` (linear,
    constant) or ``log_snr_1``/``log_snr_T`` (log-snr), ``None`` for the defaults of
    :func:`make_betas`; ``hidden`` the noise predictor's layers; ``shared``: one network
    with a step embedding of ``embedding_dim`` (DDPM) or one network per step (the book's
    DDGM); ``data_term`` one of :data:`DATA_TERMS`; ``variance`` one of :data:`VARIANCES`;
    ``objective`` one of :data:`OBJECTIVES`; ``estimator`` one of :data:`ESTIMATORS` (how the
    ``elbo`` objective is estimated in training); ``step_sampling`` one of :data:`STEP_SAMPLING`
    (how a training batch draws its steps). ``likelihood``: ``categorical`` or
    ``bernoulli`` (the diffusion runs on rescaled integer pixels), or ``gaussian`` for
    real-valued data (the 2-D toys), where the data term is a Gaussian density.
    """

    steps: int = 100
    schedule: str = "linear"
    beta_1: float | None = None
    beta_T: float | None = None
    log_snr_1: float | None = None
    log_snr_T: float | None = None
    hidden: tuple[int, ...] = (256, 256)
    shared: bool = True
    embedding_dim: int = 32
    data_term: str = "discretised-gaussian"
    variance: str = "posterior"
    objective: str = "elbo"
    step_sampling: str = "uniform"
    estimator: str = "ends-every-example"

    def __post_init__(self):
        super().__post_init__()  # the data fields: the chain runs on rescaled integer pixels,
        # binary pixels are 2-valued pixels, and real-valued data (the 2-D toys) are gaussian
        check_int(self.steps, "steps", minimum=1)
        check_int(self.embedding_dim, "embedding_dim", minimum=2)
        if self.embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even, got {self.embedding_dim}")
        if self.likelihood == "gaussian" and self.data_term == "categorical":
            raise ValueError("data_term 'categorical' needs integer pixels; real-valued data "
                             "(likelihood='gaussian') take the Gaussian data term")
        self.hidden = check_sizes(self.hidden, "hidden")
        check_choice(self.data_term, "data_term", DATA_TERMS)
        check_choice(self.variance, "variance", VARIANCES)
        check_choice(self.objective, "objective", OBJECTIVES)
        check_choice(self.step_sampling, "step_sampling", STEP_SAMPLING)
        check_choice(self.estimator, "estimator", ESTIMATORS)
        if self.objective == "simple" and self.estimator != "ends-every-example":
            raise ValueError("estimator applies to objective 'elbo' (L_simple keeps its own "
                             "definition); leave it at its default with objective 'simple'")
        self.betas()  # checks the schedule and its options now, not at build time

    def betas(self) -> torch.Tensor:
        """The schedule these fields describe (:func:`make_betas`)."""
        return make_betas(self.schedule, self.steps, self.beta_1, self.beta_T,
                          self.log_snr_1, self.log_snr_T)



def build_ddgm(config: DiffusionConfig) -> DDGM:
    """The diffusion model of ``config``: MLP noise predictors (LeakyReLU), shared with a
    sinusoidal step embedding or one per step; the data term's decoder an MLP on z_1."""
    check_config(config, DiffusionConfig, "build_ddgm's config")
    c = config
    D = c.input_dim
    if c.shared:
        eps_nets = mlp(D + c.embedding_dim, c.hidden, D)
    else:
        eps_nets = nn.ModuleList(mlp(D, c.hidden, D) for _ in range(c.steps))
    decoder = (CategoricalDecoder(mlp(D, c.hidden, D * c.num_vals), D, c.num_vals)
               if c.data_term == "categorical" else None)
    num_vals = None if c.likelihood == "gaussian" else c.num_vals
    return DDGM(c.betas(), eps_nets, D, num_vals, decoder, c.variance, c.objective,
                c.embedding_dim, c.step_sampling, c.estimator)


def ddgm_at_steps(model: DDGM, steps: int) -> DDGM:
    r"""A trained DDGM read with ``steps`` T' steps between the same end points of its log-SNR
    (a shared network only): step j of the new chain sits at the fractional step
    :math:`s_j = 1 + (j - 1)(T - 1)/(T' - 1)` of the trained one, its log-SNR
    :math:`\rho'_j` interpolated linearly between the trained steps' :math:`\rho`, and the
    network is told :math:`s_j` (its step embedding takes fractional steps). Then
    :math:`\bar\alpha'_j = \mathrm{sigmoid}(\rho'_j)` and :math:`\beta'_j = 1 -
    \bar\alpha'_j/\bar\alpha'_{j-1}`; :math:`\rho_1`, hence :math:`\beta_1` and the data
    term, and :math:`\rho_T` are kept. Shares every parameter with ``model`` (nothing is
    trained); ``steps = T`` gives the model back."""
    if not isinstance(model, DDGM):
        raise TypeError(f"model must be a DDGM, got {type(model).__name__}")
    if not model.shared:
        raise ValueError("only a DDGM with one shared network can be read at another T (one "
                         "network per step has no network for the new steps)")
    check_int(steps, "steps", minimum=2)
    if model.steps < 2:
        raise ValueError("a DDGM of one step has no chain to read at another T")
    rho = model.log_snr()
    T = len(rho)
    position = 1.0 + torch.arange(steps, dtype=torch.float64) * (T - 1) / (steps - 1)
    below = position.floor().long().clamp(max=T - 1)  # interpolate between steps below, above
    frac = position - below
    rho_new = (1 - frac) * rho[below - 1] + frac * rho[below.clamp(max=T - 1)]
    log_alpha_bar = torch.nn.functional.logsigmoid(rho_new)
    previous = torch.cat([log_alpha_bar.new_zeros(1), log_alpha_bar[:-1]])
    betas = -torch.expm1(log_alpha_bar - previous)
    new = DDGM(betas, model.eps_nets, model.input_dim, model.num_vals, model.data_decoder,
               model.variance, model.objective, model.embedding_dim, model.step_sampling,
               model.estimator).to(model.betas.device)
    new.step_positions.copy_(position.float())
    return new

