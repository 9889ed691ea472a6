import pytest
import torch

from intro_dgm.data import load_digits_split
from intro_dgm.models import VAEConfig, build_vae


@pytest.fixture(scope="session")
def digits():
    return load_digits_split()


@pytest.fixture
def small_vae():
    """A small VAE on Digits with random (non-trivial) weights."""
    torch.manual_seed(0)
    return build_vae(VAEConfig(latent_dim=4, hidden=(32,)))
