"""The latent explorer: built from trained models, it decodes the point the sliders set."""
import pytest
import torch

from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.widgets import LatentExplorer


def _model(prior, seed):
    torch.manual_seed(seed)
    return build_vae(VAEConfig(latent_dim=2, hidden=(16,), prior=prior)).eval()


def test_explorer_decodes_the_point_the_sliders_set(digits):
    models = {"standard": _model("standard", 0), "flow": _model("flow", 1)}
    explorer = LatentExplorer(models, digits.test[:50], vmax=16)
    expected = models["standard"].decoder.mean(torch.zeros(1, 2))[0]
    assert torch.allclose(explorer.image, expected)
    explorer.z1.value = 2.5  # what a user dragging the slider does
    expected = models["standard"].decoder.mean(torch.tensor([[2.5, 0.0]]))[0]
    assert torch.allclose(explorer.image, expected)
    explorer.choice.value = "flow"
    expected = models["flow"].decoder.mean(torch.tensor([[2.5, 0.0]]))[0]
    assert torch.allclose(explorer.image, expected)


def test_explorer_rejects_models_it_cannot_show(digits):
    with pytest.raises(ValueError, match="models"):
        LatentExplorer({}, digits.test[:5])
    wide = build_vae(VAEConfig(latent_dim=3, hidden=(8,)))
    with pytest.raises(ValueError, match="2-D latent"):
        LatentExplorer({"wide": wide}, digits.test[:5])
