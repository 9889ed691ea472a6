"""Log-densities, KL divergences and samplers, written once and reused by every model, down to
the von Mises-Fisher distribution on the sphere. Modules, bottom to top: ``densities`` (the
Gaussian and discrete log-densities and KLs), ``bessel`` (a log-Bessel function stable for
every order and argument), ``vmf`` (the von Mises-Fisher distribution, built on it) and
``noised_mixture`` (a Gaussian mixture through a diffusion's forward process, for Tweedie's
formula). Every public name is importable from here.
"""
from .bessel import bessel_ratio, log_bessel_iv
from .densities import (LOG_2PI, discretised_gaussian_probs, entropy_normal_diag, kl_normal_diag, kl_normal_full,
                        log_bernoulli, log_categorical, log_discretised_gaussian,
                        log_normal_diag, log_normal_diag64, log_normal_full, log_standard_normal)
from .noised_mixture import NoisedGaussianMixture
from .vmf import (VonMisesFisher, kl_vmf_uniform, log_sphere_area, log_vmf, log_vmf_normaliser,
                  sample_sphere_uniform)

__all__ = ["LOG_2PI", "NoisedGaussianMixture", "VonMisesFisher", "bessel_ratio", "discretised_gaussian_probs",
           "entropy_normal_diag", "kl_normal_diag",
           "kl_normal_full", "kl_vmf_uniform", "log_bernoulli", "log_bessel_iv",
           "log_categorical", "log_discretised_gaussian", "log_normal_diag",
           "log_normal_diag64", "log_normal_full",
           "log_sphere_area", "log_standard_normal", "log_vmf", "log_vmf_normaliser",
           "sample_sphere_uniform"]
