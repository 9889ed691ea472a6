"""Saving and loading trained models: a ``state_dict`` plus the spec and config that rebuild it.

The file holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)`` (the default since PyTorch 2.6). Files are written
atomically (:func:`~intro_dgm.utils.atomic_write`), so an interrupted run never leaves a
half-written file.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .models import MODELS, build_model, config_from_dict
from .utils import atomic_write, atomic_write_text

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


def save_checkpoint(directory, model_name: str, config, model: torch.nn.Module,
                    spec: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``DIR/checkpoint.pt``: ``{"model", "config", "spec", "state_dict", "extra"}``.

    ``config`` is the model's config object (with the data fields filled in); ``spec`` the
    run's :meth:`~intro_dgm.protocol.RunSpec.to_dict`, which holds the training config.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists: plain values
    payload = {"model": model_name, "config": cfg, "spec": spec or {},
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": extra or {}}
    return atomic_write(directory / CHECKPOINT, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(directory) -> dict:
    """The raw checkpoint dict of ``DIR`` (loaded with ``weights_only=True``)."""
    directory = Path(directory)
    path = directory / CHECKPOINT if directory.is_dir() else directory
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected the directory written by "
                                "'intro-dgm train --out DIR' (holding checkpoint.pt)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("model") not in MODELS:
        raise ValueError(f"{path} is not an intro_dgm checkpoint")
    return payload


def load_model(directory) -> torch.nn.Module:
    """Rebuild the trained model from ``DIR/checkpoint.pt``, in eval mode, on the CPU."""
    payload = load_checkpoint(directory)
    config = config_from_dict(payload["model"], payload["config"])
    # A data-initialised part (pseudo-inputs) is a placeholder until the trained values of
    # the state_dict replace it: loading needs no training data.
    model = build_model(payload["model"], config)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def write_metrics(directory, metrics: dict) -> Path:
    """Write ``DIR/metrics.json`` atomically (it appears only once the run has finished)."""
    return atomic_write_text(Path(directory) / METRICS,
                             json.dumps(metrics, indent=2, sort_keys=True) + "\n")
