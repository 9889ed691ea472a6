"""One protocol for every model: a run specification, one function that trains and evaluates
it, and a results store that tables and pages read.

* :class:`RunSpec` -- everything a number depends on that we choose: model name and config,
  training config, data set, seed, importance samples, extra metrics, threads and device.
  Its :attr:`RunSpec.id` is a hash of the fields that differ from their defaults, so a config
  that later gains a field with a default keeps the ids of every stored run.
* :func:`run` -- build the model (seeded), train it with :func:`~intro_dgm.training.fit`
  (early stopping on the validation -ELBO), evaluate it on the test set. The metric keys are
  the same for every model (:data:`METRIC_KEYS`), plus ``test_<term>`` for every other term of
  the model's ``bound`` (per-level KLs, ...) and the requested :data:`EXTRA_METRICS`.
* :func:`open_store` -- one of the book's results stores by name (they travel with the
  package, :data:`STORES_DIR`); a missing one is an error, never an empty store.
* :class:`ResultsStore` -- a JSON-lines file, one row per run holding its spec, metrics,
  environment (library versions, threads, device) and status; appended atomically, read
  back with clear errors, resumable (``ResultsStore.completed_ids``). A run whose loss
  became NaN is stored with ``status: "failed"`` and the reason, so a page can count failures.
* the results layer (:mod:`intro_dgm.runs.results`): :func:`select` rows, a stored or
  derived :func:`metric_value`, its :func:`summary` over seeds (mean ± sd, n), and
  :func:`compare` two sets of runs (paired on per-example values where they are kept);
  :func:`summarise` and :func:`markdown_table` -- mean and sd over seeds, group by group.
* Beside the store: what a page plots but a row cannot hold (per-example scores, a
  :func:`gallery` of samples and reconstructions, training curves) goes to one ``.npz`` per
  run (:func:`save_run_arrays`, :func:`load_run_arrays`): the arrays the ``after`` hook of
  :func:`run_and_store` / :func:`run_missing` returns, saved before the row, so every stored
  row has its arrays.

The code lives in the :mod:`intro_dgm.runs` package, one idea per module (spec, metrics,
runner, store, tables); this module gathers their public names.

``intro-dgm train``, ``reproduce`` and ``table`` (:mod:`intro_dgm.cli`) are thin wrappers.
"""

from .runs.metrics import (ENCODER_KEYS, EXTRA_METRICS, METRIC_KEYS, count_parameters, evaluate,
                           evaluate_per_example, gallery, mean_image_mse)
from .runs.runner import Run, environment, run, run_and_store, run_missing
from .runs.spec import DATA_FIELDS, RunSpec, resolved_config, train_config_from_dict
from .runs.store import (STORES_DIR, ResultsStore, load_measurement, load_run_arrays, make_row,
                         open_store, save_run_arrays, state_arrays, store_path, stored_model)
from .runs.examples import ExampleSummary, Trend, describe, example_values, trend
from .runs.results import (DERIVED, Comparison, Summary, compare, metric_value,
                           rank_correlation, ranked, select, spec_value, summary,
                           varying_keys)
from .runs.tables import example_table, markdown_rows, markdown_table, summarise

__all__ = ["ENCODER_KEYS", "EXTRA_METRICS", "METRIC_KEYS", "count_parameters", "evaluate",
           "evaluate_per_example", "gallery", "mean_image_mse", "Run", "environment", "run",
           "run_and_store", "run_missing", "DATA_FIELDS", "RunSpec", "resolved_config", "train_config_from_dict",
           "ResultsStore", "load_run_arrays", "make_row", "save_run_arrays", "STORES_DIR",
           "open_store", "store_path", "state_arrays", "stored_model", "load_measurement",
           "markdown_table", "example_table", "markdown_rows", "ExampleSummary", "Trend",
           "describe", "example_values", "trend",
           "spec_value", "summarise", "varying_keys", "DERIVED", "Comparison", "Summary",
           "compare", "metric_value", "rank_correlation", "ranked", "select", "summary"]
