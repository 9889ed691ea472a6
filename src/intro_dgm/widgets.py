"""Interactive explorers for the notebooks.

``ipywidgets`` is imported only when an explorer is built, and only widgets and calls that
exist in both ipywidgets 7.7 (Colab) and 8 are used: ``FloatSlider``, ``Dropdown``,
``IntSlider``, ``Output``, ``HBox``/``VBox`` and ``observe(..., names="value")``. The pictures
are functions of :mod:`intro_dgm.plotting` (``latent_view``, ``compare_rows``), so the book
can show the same view as a static figure.

Devices follow the model: an explorer moves its inputs to the device of the model it shows
(a model trained on a GPU may stay there) and keeps the pictures' values on the CPU.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .analysis import log_density_grid
from .plotting import compare_rows, latent_view
from .utils import module_device


class LatentExplorer:
    """Move a point in the 2-D latent plane and see what each trained model decodes there.

    ``widget`` is the ipywidgets box to display; ``image`` the last decoded image.

    Args:
        models: ``{name: trained VAE with a 2-D latent}``; a dropdown switches between them.
        x: data whose codes (posterior means, ``model.posterior(x).mean``) show the
            aggregated posterior behind the point.
        image_shape: shape of one decoded image.
        lim: the sliders and the plot cover ``[-lim, lim]^2``.
        vmax: the largest pixel value, for the grey scale of the decoded image (``None``: the
            image's own maximum).
    """

    def __init__(self, models: dict, x: torch.Tensor, image_shape=(8, 8), lim: float = 4.0,
                 vmax: float | None = None):
        if not models:
            raise ValueError("models must name at least one trained model")
        for name, model in models.items():
            if model.latent_dim != 2:
                raise ValueError(f"models[{name!r}] must have a 2-D latent space, "
                                 f"got latent_dim={model.latent_dim}")
        import ipywidgets as w

        self.models, self.image_shape, self.lim, self.vmax = dict(models), image_shape, lim, vmax
        with torch.no_grad():
            self._codes = {n: m.posterior(x.to(module_device(m))).mean.cpu()
                           for n, m in self.models.items()}
            self._grids = {n: log_density_grid(m.prior, lim) for n, m in self.models.items()}
        slider = dict(min=-lim, max=lim, step=0.1, value=0.0, continuous_update=False)
        self.z1 = w.FloatSlider(description="z1", **slider)
        self.z2 = w.FloatSlider(description="z2", **slider)
        self.choice = w.Dropdown(options=list(self.models), description="prior")
        self.output = w.Output()
        for control in (self.z1, self.z2, self.choice):
            control.observe(self.update, names="value")
        self.widget = w.VBox([w.HBox([self.choice, self.z1, self.z2]), self.output])
        self.image = None
        self.update()

    def figure(self, name: str, point: tuple[float, float]):
        """The explorer's view for model ``name`` at ``point`` (also the book's static figure)."""
        model = self.models[name]
        with torch.no_grad():
            z = torch.tensor([point], dtype=torch.float32, device=module_device(model))
            self.image = model.decoder.mean(z)[0].cpu()
        axis, log_p = self._grids[name]
        return latent_view(axis, log_p, self._codes[name], point, self.image, self.image_shape,
                           title=f"{name} prior", vmax=self.vmax)

    def update(self, change=None) -> None:
        from IPython.display import display

        fig = self.figure(self.choice.value, (self.z1.value, self.z2.value))
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)


class DiffusionExplorer:
    """Slide over the steps t of a diffusion model: a few images noised to :math:`z_t` by the
    forward process and, below them, the trained network's guess of each image from its
    :math:`z_t` (:meth:`~intro_dgm.models.diffusion.DDGM.predict_x0`).

    ``widget`` is the ipywidgets box to display; ``z_t`` and ``x0`` the last pictures' values
    (pixel scale). The noise is drawn once (seed 0), so moving the slider shows one path.

    Args:
        model: a trained :class:`~intro_dgm.models.diffusion.DDGM` on images.
        x: a few images ``(n, D)`` (integer pixels).
        image_shape: the shape of one image.
    """

    def __init__(self, model, x: torch.Tensor, image_shape=(8, 8)):
        from .models import DDGM

        if not isinstance(model, DDGM) or model.num_vals is None:
            raise ValueError("model must be a diffusion model (DDGM) of images with integer pixels")
        import ipywidgets as w

        self.model, self.x, self.image_shape = model, x, image_shape
        self.noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        self.t = w.IntSlider(description="t", min=1, max=model.steps, step=1, value=1,
                             continuous_update=False)
        self.output = w.Output()
        self.t.observe(self.update, names="value")
        self.widget = w.VBox([self.t, self.output])
        self.z_t = self.x0 = None
        self.update()

    def figure(self, t: int):
        """The explorer's view at step ``t`` (also the book's static figure)."""
        m, device = self.model, module_device(self.model)
        with torch.no_grad():  # the noise is drawn on the CPU: the same path on every device
            z_t = m.q_sample(self.x.to(device), t, noise=self.noise.to(device))
            self.z_t, self.x0 = m.to_pixels(z_t).cpu(), m.to_pixels(m.predict_x0(z_t, t)).cpu()
        fig = compare_rows({"data": self.x, f"z_t, t = {t}": self.z_t, "guess of x": self.x0},
                           self.image_shape, vmax=m.num_vals - 1)
        # above the tight layout: suptitle hangs from y (va="top") unless told otherwise
        fig.suptitle(f"log-SNR at t = {t}: {m.log_snr()[t - 1]:.2f}", fontsize=10, y=1.0, va="bottom")
        return fig

    def update(self, change=None) -> None:
        from IPython.display import display

        fig = self.figure(self.t.value)
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)
