"""intro_dgm: latent variable models from first principles to working code.

The package behind the book: every notebook imports from here. Modules, bottom to top
(each imports only from the ones before it; a subpackage -- ``distributions``, ``data``,
``models``, ``runs`` -- counts as one, its modules importing one another): ``utils`` and
``distributions``; ``data``, ``nets``, ``plotting`` and ``flows``; ``priors``; ``posteriors``
and ``encoders``; ``decoders``; ``models``; ``training``, ``evaluation`` and ``ood``;
``analysis``; ``runs``; ``protocol`` and ``checkpoints``; ``widgets``; ``cli``.
"""
__version__ = "0.1.0"


def load_model(directory):
    """Load the trained model saved by ``intro-dgm train --out DIR``, in eval mode."""
    from .checkpoints import load_model as _load
    return _load(directory)
