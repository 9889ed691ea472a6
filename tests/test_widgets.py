"""The latent explorer: built from trained models, it decodes the point the sliders set."""
import copy

import pytest
import torch

from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.models import build_model
from intro_dgm.widgets import DiffusionExplorer, LatentExplorer


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


def test_diffusion_explorer_shows_the_step_the_slider_sets(digits):
    torch.manual_seed(0)
    model = build_model("ddgm", {"steps": 10, "hidden": [16]}).eval()
    x = digits.test[:4]
    explorer = DiffusionExplorer(model, x)
    noise = explorer.noise
    for t in (1, 7):
        explorer.t.value = t  # what a user dragging the slider does
        z_t = model.q_sample(x, t, noise=noise)
        assert torch.allclose(explorer.z_t, model.to_pixels(z_t))
        with torch.no_grad():
            guess = model.to_pixels(model.predict_x0(z_t, t))
        assert torch.allclose(explorer.x0, guess)
    # with the true noise in place of the network's guess, the formula gives x back
    z = model.q_sample(x, 5, noise=noise)
    a = model.alphas_cumprod[4]
    assert torch.allclose(model.to_pixels((z - (1 - a).sqrt() * noise) / a.sqrt()), x, atol=1e-4)
    with pytest.raises(ValueError, match="model must be a diffusion model"):
        DiffusionExplorer(build_vae(VAEConfig(latent_dim=2, hidden=(8,))), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_explorers_follow_a_model_on_the_gpu(digits):
    # CPU data in, the computation on the model's device, CPU pictures out
    model = _model("standard", 0)
    explorer = LatentExplorer({"gpu": copy.deepcopy(model).cuda()}, digits.test[:50], vmax=16)
    explorer.z1.value = 1.5
    assert explorer.image.device.type == "cpu"
    with torch.no_grad():
        expected = model.decoder.mean(torch.tensor([[1.5, 0.0]]))[0]
    assert torch.allclose(explorer.image, expected, atol=1e-5)
    torch.manual_seed(0)
    ddgm = build_model("ddgm", {"steps": 10, "hidden": [16]}).eval()
    explorer = DiffusionExplorer(copy.deepcopy(ddgm).cuda(), digits.test[:4])
    explorer.t.value = 7
    z_t = ddgm.q_sample(digits.test[:4], 7, noise=explorer.noise)
    assert explorer.z_t.device.type == "cpu" and explorer.x0.device.type == "cpu"
    assert torch.allclose(explorer.z_t, ddgm.to_pixels(z_t), atol=1e-4)
