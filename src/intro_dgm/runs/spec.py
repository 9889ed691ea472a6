"""A run, fully described: :class:`RunSpec` and its id.

A spec holds everything a number depends on that we choose: model name and config, training
config, data set, seed, importance samples, extra metrics, threads and device. Its
:attr:`RunSpec.id` is a hash of the fields that differ from their defaults, so a config that
later gains a field with a default keeps the ids of every stored run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ..data import DATASETS, DataFields, Split
from ..models import config_from_dict, model_entry
from ..training import TrainConfig
from ..utils import check_fields, check_int
from .metrics import EXTRA_METRICS

#: Config fields that describe the data (:class:`~intro_dgm.data.DataFields`), filled in from
#: the data set by :func:`resolved_config` unless the spec sets them.
DATA_FIELDS = tuple(f.name for f in dataclasses.fields(DataFields))
#: Spec fields that name a run for the pages (stored with it) but are not what it computes:
#: they never enter its id.
NAMES = ("label", "group")


# ------------------------------------------------------------------------- the spec
def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(value):
    """JSON-shaped copy: tuples become lists, dataclasses dicts."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a run spec: {value!r}")


def _non_default(cls, values: dict) -> dict:
    """The entries of ``values`` that differ from the defaults of dataclass ``cls``."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            default = _field_default(f)
            if default is dataclasses.MISSING or _plain(values[f.name]) != _plain(default):
                out[f.name] = _plain(values[f.name])
    return out


@dataclass
class RunSpec:
    """A run, fully described. Plain values only, so it round-trips through JSON.

    Attributes:
        model: a name in :data:`~intro_dgm.models.MODELS`.
        model_config: fields of that model's config (the rest keep their defaults; the data
            fields ``input_dim``, ``num_vals``, ``likelihood`` come from the data set).
        train: a :class:`~intro_dgm.training.TrainConfig`.
        dataset: a name in :data:`~intro_dgm.data.DATASETS`.
        dataset_options: options of that data set's loader (e.g. ``{"p": 0.5}`` for
            ``two-gaussians``).
        seed: seeds the model's initialisation, the batches, and the evaluation's samples.
        k: importance samples per test example for ``test_nll_iw``.
        extras: names in :data:`EXTRA_METRICS` to measure too.
        threads: ``torch.set_num_threads`` during the run (``None``: PyTorch's choice).
        device: ``"cpu"``, ``"cuda"``, ... (``None``: CUDA when there is one).
        label: what a page calls the run's configuration (e.g. ``"VampPrior"``), set by the
            sweep that made it; not part of :attr:`id` (:data:`NAMES`).
        group: the part of a sweep the run belongs to (e.g. ``"tuned-start"``); not part of
            :attr:`id` either.
    """

    model: str = "vae"
    model_config: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: str = "digits"
    dataset_options: dict = field(default_factory=dict)
    seed: int = 0
    k: int = 1000
    extras: tuple[str, ...] = ()
    threads: int | None = None
    device: str | None = None
    label: str | None = None
    group: str | None = None

    def __post_init__(self):
        model_entry(self.model)  # a clear error for an unknown model
        if not isinstance(self.model_config, dict):
            raise TypeError(f"model_config must be a dict of config fields, got "
                            f"{type(self.model_config).__name__}")
        config_from_dict(self.model, self.model_config)  # unknown or invalid fields
        if isinstance(self.train, dict):
            self.train = train_config_from_dict(self.train)
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig or a dict, got {type(self.train).__name__}")
        DATASETS.lookup(self.dataset)  # a clear error for an unknown name
        if not isinstance(self.dataset_options, dict):
            raise TypeError(f"dataset_options must be a dict, got "
                            f"{type(self.dataset_options).__name__}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.k, "k", minimum=1)
        self.extras = tuple(self.extras)
        for name in self.extras:
            EXTRA_METRICS.lookup(name)  # a clear error for an unknown name
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1)
        for name, value in (("label", self.label), ("group", self.group)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {value!r}")

    def to_dict(self) -> dict:
        """Every field, defaults included (what a results row stores)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> "RunSpec":
        """The inverse of :meth:`to_dict`; unknown fields are a clear error."""
        return cls(**check_fields(cls, values, "run spec"))

    def canonical(self) -> dict:
        """The fields that differ from their defaults, at every level: what :attr:`id` hashes."""
        config_cls = model_entry(self.model).config
        out = _non_default(RunSpec, {f.name: getattr(self, f.name)
                                     for f in dataclasses.fields(RunSpec)
                                     if f.name not in ("model_config", "train", *NAMES)})
        out["model"] = self.model  # always named, even when it is the default
        config = _non_default(config_cls, self.model_config)
        train = _non_default(type(self.train), dataclasses.asdict(self.train))
        if config:
            out["model_config"] = config
        if train:
            out["train"] = train
        return out

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`canonical` as sorted JSON."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def train_config_from_dict(values: dict) -> TrainConfig:
    """A :class:`~intro_dgm.training.TrainConfig` from a dict; unknown fields are a clear error."""
    return TrainConfig(**check_fields(TrainConfig, values, "training"))


def resolved_config(spec: RunSpec, split: Split):
    """The model's config object, with the data fields filled from ``split``."""
    config_cls = model_entry(spec.model).config
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = dict(spec.model_config)
    for key, value in split.data_fields().items():
        if key in names:
            values.setdefault(key, value)
    return config_from_dict(spec.model, values)
