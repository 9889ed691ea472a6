"""The stores the pages read say what wrote them, and every stored test number follows from
the per-example values kept beside it.

``NEW_EVALUATION`` names the stores re-run under the one-pass evaluation (the stored ELBO and
its terms are means over the S draws of the importance-weighted estimate, float64, per
example; :func:`intro_dgm.runs.metrics.evaluate_per_example`). Every ``ok`` row of such a
store carries the code version (package version, git commit, a clean tree, the processor)
and arrays from which ``test_elbo``, ``test_rec``, ``test_kl`` (and each ``test_kl_*``) and
``test_nll_iw`` recompute to 1e-6 relative, and the terms add up image by image. When all six
stores are re-run, this list holds all six.
"""
import numpy as np
import pytest

from intro_dgm.runs.store import STORES_DIR, load_run_arrays, open_store

NEW_EVALUATION = ("diffusion", "digits", "fashion", "hierarchical", "posteriors", "priors")
RTOL = 1e-6
#: metric -> (per-example array, sign): the metric is sign * mean(array)
RECOMPUTED = {"test_nll_iw": ("test_log_likelihood", -1.0), "test_elbo": ("test_elbo", 1.0),
              "test_rec": ("test_rec", 1.0), "test_kl": ("test_kl", 1.0)}


def _ok_rows(name):
    store = open_store(name)
    rows = [r for r in store.rows() if r["status"] == "ok"]
    assert rows, f"{name}: no finished rows"
    return store, rows


def recompute_errors(row: dict, arrays: dict) -> list[str]:
    """What in ``row`` does not follow from its ``arrays`` (an empty list: everything does)."""
    problems = []
    metrics = row["metrics"]
    names = {**RECOMPUTED, **{m: (m, 1.0) for m in metrics if m.startswith("test_kl_")}}
    for metric, (key, sign) in names.items():
        if metric not in metrics:
            continue
        if key not in arrays:
            problems.append(f"{metric}: no per-example {key!r} kept")
            continue
        value = sign * float(np.mean(arrays[key].astype(np.float64)))
        if not np.isclose(metrics[metric], value, rtol=RTOL, atol=0.0):
            problems.append(f"{metric}: stored {metrics[metric]!r}, recomputed {value!r}")
    if "test_kl" in arrays:  # the terms add up draw by draw, hence image by image
        gap = arrays["test_elbo"] - (arrays["test_rec"] - arrays["test_kl"])
        if np.abs(gap).max() > 1e-9 * max(1.0, np.abs(arrays["test_elbo"]).max()):
            problems.append("test_elbo != test_rec - test_kl per image")
        parts = [k for k in arrays if k.startswith("test_kl_")]
        # each level's share of a draw is a float32 model output (the sums are float64):
        # levels and total agree to float32 rounding, about 1e-9 of the KL after averaging
        # over the draws; a mismatch of draws would be off by a tenth of a nat
        if parts and not np.allclose(sum(arrays[k] for k in parts), arrays["test_kl"],
                                     rtol=1e-7, atol=1e-9):
            problems.append("the per-level KLs do not add up to test_kl")
    elif "test_kl" in metrics:
        problems.append("test_kl stored without its per-example values")
    return problems


@pytest.mark.parametrize("name", NEW_EVALUATION)
def test_rows_say_which_code_wrote_them(name):
    _, rows = _ok_rows(name)
    for row in rows:
        env = row["environment"]
        assert env.get("intro_dgm") and env.get("cpu"), (name, row["id"], env)
        assert isinstance(env.get("commit"), str) and len(env["commit"]) == 40, (name, row["id"])
        assert env.get("dirty") is False, f"{name}: row {row['id']} was written from a dirty tree"


@pytest.mark.parametrize("name", NEW_EVALUATION)
def test_every_stored_test_number_recomputes_from_the_arrays(name):
    store, rows = _ok_rows(name)
    for row in rows:
        problems = recompute_errors(row, load_run_arrays(store.arrays_dir, row["id"]))
        assert not problems, f"{name}: row {row['id']}: {problems}"
        if row["spec"]["model"] == "realnvp":  # a model without a KL: the ELBO is its rec
            assert "test_kl" not in row["metrics"]
            assert row["metrics"]["test_elbo"] == row["metrics"]["test_rec"]


def test_the_recomputation_catches_what_it_checks():
    arrays = {"test_log_likelihood": np.array([-90.0, -92.0]),
              "test_elbo": np.array([-95.0, -97.0]), "test_rec": np.array([-80.0, -81.0]),
              "test_kl": np.array([15.0, 16.0]), "test_kl_z1": np.array([10.0, 10.0]),
              "test_kl_z2": np.array([5.0, 6.0])}
    row = {"metrics": {"test_nll_iw": 91.0, "test_elbo": -96.0, "test_rec": -80.5,
                       "test_kl": 15.5, "test_kl_z1": 10.0, "test_kl_z2": 5.5}}
    assert recompute_errors(row, arrays) == []
    drifted = {"metrics": {**row["metrics"], "test_elbo": -96.0 * (1 + 2e-6)}}
    assert recompute_errors(drifted, arrays) == [
        f"test_elbo: stored {-96.0 * (1 + 2e-6)!r}, recomputed -96.0"]
    apart = dict(arrays, test_rec=np.array([-80.0, -80.5]))
    assert "test_elbo != test_rec - test_kl per image" in recompute_errors(
        {"metrics": {}}, apart)
    levels = dict(arrays, test_kl_z2=np.array([5.0, 5.0]))
    assert "the per-level KLs do not add up to test_kl" in recompute_errors(
        {"metrics": {}}, levels)


def test_the_listed_stores_exist():
    for name in NEW_EVALUATION:
        assert (STORES_DIR / f"{name}_results.jsonl").is_file()
