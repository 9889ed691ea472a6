"""Devices follow the model: every public function and model method that takes data moves it
to the model's device first (a model trained on a GPU may stay there). No GPU here: a spy on
``Tensor.to`` checks, on the CPU, that each one asks for the model's device for its input
(the CUDA tests in test_repository.py and test_analysis.py run where there is one)."""
import pytest
import torch

from intro_dgm import analysis, evaluation
from intro_dgm.models import build_model
from intro_dgm.runs import metrics

MODELS = {"vae": {"latent_dim": 2, "hidden": [8]},
          "top-down": {"latent_dim": 2, "top_latent_dim": 2, "hidden": [8], "top_hidden": [4]},
          "ddgm": {"steps": 2, "hidden": [8], "embedding_dim": 4},
          "realnvp": {"couplings": 2, "coupling_hidden": 8}}


@pytest.fixture
def moves(monkeypatch):
    """Records every ``Tensor.to(device)``: (storage address, device asked for)."""
    class Calls(list):
        def moved(self, x, device=torch.device("cpu")):
            return (x.untyped_storage().data_ptr(), device) in self
    calls = Calls()
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)):
            calls.append((self.untyped_storage().data_ptr(), torch.device(target)))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", spy)
    return calls


def _model(name):
    torch.manual_seed(0)
    return build_model(name, MODELS[name]).eval()


CALLS = {  # public functions of the package that take a model and data
    "evaluation.elbo": lambda m, x: evaluation.elbo(m, x),
    "evaluation.evaluate_bound": lambda m, x: evaluation.evaluate_bound(m, x, k=2),
    "evaluation.iwae_log_likelihood": lambda m, x: evaluation.iwae_log_likelihood(m, x, k=2),
    "model.loss": lambda m, x: m.loss(x),
    "model.bound": lambda m, x: m.bound(x),
    "model.log_weight_terms": lambda m, x: m.log_weight_terms(x, 2),
    "model.reconstruct": lambda m, x: m.reconstruct(x),
}
LATENT_CALLS = {
    "evaluation.active_units_per_level": lambda m, x: evaluation.active_units_per_level(m, x),
    "model.posterior_means": lambda m, x: m.posterior_means(x),
}
VAE_CALLS = {
    "analysis.aggregated_posterior": lambda m, x: analysis.aggregated_posterior(m, x),
    "analysis.elbo_decomposition": lambda m, x: analysis.elbo_decomposition(m, x, samples=2),
    "model.posterior": lambda m, x: m.posterior(x),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_function_that_takes_data_moves_it_to_the_models_device(name, moves, digits):
    model, x = _model(name), digits.test[:6].clone()
    calls = dict(CALLS)
    if name in ("vae", "top-down"):
        calls.update(LATENT_CALLS)
    if name == "vae":
        calls.update(VAE_CALLS)
    for what, call in calls.items():
        moves.clear()
        with torch.no_grad():
            call(model, x)
        assert moves.moved(x), f"{what} did not move its input to the model's device"


def test_a_run_is_measured_where_it_trained_and_handed_back_on_the_cpu(moves, digits):
    """run() evaluates on its training device (on a GPU, where it is fast), and the gallery
    and the run's model come back on the CPU."""
    from intro_dgm.protocol import RunSpec, run
    from intro_dgm.training import TrainConfig

    result = run(RunSpec(model_config=MODELS["vae"], train=TrainConfig(max_epochs=1), k=2,
                         device="cpu", extras=("reconstruction",)), digits)
    assert moves.moved(digits.test, torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in result.model.parameters())
    gallery = metrics.gallery(result.model, digits, num_samples=2, num_reconstructions=2)
    assert gallery["reconstructions"].shape == (2, 64)


def test_the_spy_sees_a_function_that_does_not_move_its_input(moves, digits):
    """The check itself can fail: a function that uses its input where it is is caught."""
    model, x = _model("vae"), digits.test[:6].clone()
    with torch.no_grad():
        model.decoder.log_prob(x, torch.zeros(6, 2))  # a part, not a public entry point
    assert not moves.moved(x)
