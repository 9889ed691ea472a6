"""Figures: every function returns a Figure that shows what it was given."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from intro_dgm.plotting import (compare_rows, image_grid, latent_view, learning_curves,  # noqa: E402
                                prior_contours, source_listing)
from intro_dgm.training import History, TrainConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_image_grid_shows_each_image_once(digits):
    fig = image_grid(digits.test[:10], nrow=2, vmax=16, title="ten")
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 10 and len(fig.axes) == 10
    assert np.array_equal(shown[3], digits.test[3].reshape(8, 8).numpy())
    assert fig._suptitle.get_text() == "ten"


def test_compare_rows_labels_each_row(digits):
    fig = compare_rows({"data": digits.test[:4], "again": digits.test[:3]}, vmax=16)
    assert [fig.axes[0].get_ylabel(), fig.axes[4].get_ylabel()] == ["data", "again"]
    assert sum(1 for ax in fig.axes if ax.images) == 7


def test_learning_curves_mark_the_best_epoch():
    history = History(train_loss=[5.0, 4.0, 3.5], val_loss=[6.0, 4.5, 4.8], best_epoch=1,
                      best_val_loss=4.5)
    ax = learning_curves(history).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["validation"].get_ydata()) == [6.0, 4.5, 4.8]
    assert list(lines["best epoch (2)"].get_xdata()) == [2, 2]


def test_prior_contours_and_latent_view():
    axis = torch.linspace(-3, 3, 20)
    log_p = -0.5 * (axis[None] ** 2 + axis[:, None] ** 2)
    z = torch.randn(30, 2)
    ax = prior_contours(axis, log_p, z, title="p").axes[0]
    assert ax.collections[-1].get_offsets().shape == (30, 2) and ax.get_title() == "p"
    fig = latent_view(axis, log_p, z, (1.0, -0.5), torch.arange(64.0), vmax=63)
    assert "z = (1.0, -0.5)" in fig.axes[1].get_title()
    assert np.array_equal(fig.axes[1].images[0].get_array(), np.arange(64.0).reshape(8, 8))


def test_source_listing_shows_the_code_that_runs():
    text = source_listing(TrainConfig).data
    assert text.startswith("```python\n@dataclass\nclass TrainConfig")
    assert "def beta(self, epoch: int)" in text


def test_diffusion_clouds_show_both_processes_at_the_same_steps():
    from intro_dgm.models import build_model
    from intro_dgm.plotting import diffusion_clouds

    torch.manual_seed(0)
    model = build_model("ddgm", {"input_dim": 2, "likelihood": "gaussian", "steps": 8,
                                 "hidden": [8]})
    x = torch.randn(50, 2)
    fig = diffusion_clouds(model, x, "T = 8", n=30)
    axes = fig.axes
    assert len(axes) == 2 * 5  # data/generated and steps 1, 2, 4, 8
    assert [a.get_title() for a in axes[1:5]] == [f"forward $z_{{{t}}}$" for t in (1, 2, 4, 8)]
    assert axes[0].collections[0].get_offsets().shape == (50, 2)
    assert axes[5].collections[0].get_offsets().shape == (30, 2)
    assert fig._suptitle.get_text() == "T = 8"
