"""Saving and loading trained models: a ``state_dict`` plus the config that rebuilds it.

The file holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)`` (the default since PyTorch 2.6). Files are written
to a temporary name and renamed, so an interrupted run never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from .models import MODELS, build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(directory, model_name: str, config, model: torch.nn.Module,
                    extra: dict | None = None) -> Path:
    """Write ``DIR/checkpoint.pt``: ``{"model", "config", "state_dict", "extra"}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = asdict(config)
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
    payload = {"model": model_name, "config": cfg,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": extra or {}}
    path = directory / CHECKPOINT
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


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
    config = dict(payload["config"])
    if "hidden" in config:
        config["hidden"] = tuple(config["hidden"])
    prior_kwargs = config.get("prior_kwargs") or {}
    if prior_kwargs.get("init") == "data":
        # The pseudo-inputs' trained values come from the state_dict below; how they were
        # initialised no longer matters, and the training data is not needed to load.
        config["prior_kwargs"] = {**prior_kwargs, "init": "random"}
    model = build_model(payload["model"], config)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def write_metrics(directory, metrics: dict) -> Path:
    """Write ``DIR/metrics.json`` atomically (it appears only once the run has finished)."""
    path = Path(directory) / METRICS
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path
