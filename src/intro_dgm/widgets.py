"""Interactive explorers for the notebooks.

``ipywidgets`` is imported only when an explorer is built, and only widgets and calls that
exist in both ipywidgets 7.7 (Colab) and 8 are used: ``FloatSlider``, ``Dropdown``,
``Output``, ``HBox``/``VBox`` and ``observe(..., names="value")``. The picture itself is
:func:`~intro_dgm.plotting.latent_view`, so the book can show the same view as a static figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .analysis import log_density_grid
from .plotting import latent_view


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
            self._codes = {n: m.posterior(x).mean for n, m in self.models.items()}
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
            z = torch.tensor([point], dtype=torch.float32)
            self.image = model.decoder.mean(z)[0]
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
