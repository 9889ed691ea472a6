"""The results layer (intro_dgm.runs.results): selecting rows, stored and derived metrics,
summaries over seeds, and comparisons paired on images or seeds, each checked against a
computation written out here."""
import math
import statistics

import numpy as np
import pytest

from intro_dgm.protocol import (RunSpec, compare, describe, example_table, example_values,
                                make_row, markdown_rows, markdown_table, metric_value,
                                save_run_arrays, select, summary, trend)


def _row(seed, nll, elbo, prior="standard", label=None, group=None, status="ok"):
    spec = RunSpec(model_config={"latent_dim": 2, "prior": prior}, seed=seed, label=label,
                   group=group)
    row = make_row(spec)
    row.update(status=status, metrics={"test_nll_iw": nll, "test_elbo": elbo})
    return row


ROWS = [_row(0, 95.0, -97.0, label="A", group="g"), _row(1, 96.0, -98.5, label="A", group="g"),
        _row(2, 94.0, -96.0, label="A", group="g"),
        _row(0, 93.0, -95.5, "mog", label="B"), _row(1, 93.5, -96.5, "mog", label="B"),
        _row(2, 92.0, -95.0, "mog", label="B"),
        _row(3, math.nan, math.nan, "mog", label="B", status="failed")]


def test_names_are_stored_with_the_spec_but_not_in_its_id():
    plain = RunSpec(model_config={"latent_dim": 2})
    named = RunSpec(model_config={"latent_dim": 2}, label="VAE", group="table")
    assert named.id == plain.id
    assert RunSpec.from_dict(named.to_dict()).label == "VAE"
    with pytest.raises(TypeError, match="label must be a string or None"):
        RunSpec(label=3)


def test_select_by_spec_values_label_group_and_status():
    assert len(select(ROWS, {"model_config.prior": "mog"})) == 3  # the failed row left out
    assert len(select(ROWS, {"model_config.prior": "mog"}, status=None)) == 4
    assert [r["spec"]["seed"] for r in select(ROWS, label="A")] == [0, 1, 2]
    assert select(ROWS, label="B", group="g") == []
    assert len(select(ROWS, {"model": "vae", "model_config.latent_dim": 2})) == 6
    old = dict(ROWS[0], spec={k: v for k, v in ROWS[0]["spec"].items() if k != "label"})
    assert select([old], label="A") == []  # a row stored before labels existed has none


def test_derived_metrics_and_summaries():
    a = select(ROWS, label="A")
    assert metric_value(a[0], "neg_elbo") == 97.0
    assert metric_value(a[0], "gap") == pytest.approx(97.0 - 95.0)
    with pytest.raises(ValueError, match="metric must be one of .*test_nll_iw.*; got 'test_nll'"):
        metric_value(a[0], "test_nll")
    s = summary(a, "test_nll_iw")
    assert (s.mean, s.n) == (95.0, 3) and s.sd == pytest.approx(statistics.stdev([95, 96, 94]))
    assert s.se == pytest.approx(s.sd / math.sqrt(3))
    assert f"{s:.2f}" == "95.00 ± 1.00 (3)"
    table = markdown_table(ROWS, ["model_config.prior"], ["test_nll_iw", "gap"])
    assert "| mog | 3 (+1 failed) | 92.83 ± 0.76 | 2.83 ± 0.29 |" in table


def test_compare_over_seeds_paired_and_unpaired():
    a, b = select(ROWS, label="A"), select(ROWS, label="B")
    c = compare(a, b, "test_nll_iw")
    d = [95 - 93, 96 - 93.5, 94 - 92]
    assert c.paired_on == "seeds" and c.n == 3
    assert c.diff == pytest.approx(statistics.mean(d))
    assert c.se == pytest.approx(statistics.stdev(d) / math.sqrt(3))
    u = compare(a, b[:2], "test_nll_iw")  # seeds 0, 1 against 0, 1, 2: not all paired
    assert u.paired_on == "unpaired"
    assert u.se == pytest.approx(math.sqrt(statistics.variance([95, 96, 94]) / 3
                                           + statistics.variance([93, 93.5]) / 2))
    assert "paired on 3 seeds" in str(c)
    w = compare(a, b, "test_nll_iw", paired=False)  # the same seeds, unpaired on request
    assert w.paired_on == "unpaired" and w.diff == pytest.approx(c.diff)
    assert w.se == pytest.approx(math.sqrt(statistics.variance([95, 96, 94]) / 3
                                           + statistics.variance([93, 93.5, 92]) / 3))
    with pytest.raises(ValueError, match="paired must be True or False"):
        compare(a, b, "test_nll_iw", paired="no")


def test_compare_pairs_image_by_image_where_per_example_values_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    a, b = select(ROWS, label="A"), select(ROWS, label="B")
    lls = {}
    for row in a + b:
        lls[row["id"]] = -rng.gamma(50.0, 2.0, size=40)
        save_run_arrays(tmp_path, row["id"], test_log_likelihood=lls[row["id"]])
    c = compare(a, b, "test_nll_iw", arrays_dir=tmp_path)
    per_image = np.mean([-(lls[ra["id"]] - lls[rb["id"]]) for ra, rb in zip(a, b)], axis=0)
    assert c.paired_on == "images" and c.n == 40 and c.seeds == 3
    assert c.diff == pytest.approx(per_image.mean())
    assert c.se == pytest.approx(per_image.std(ddof=1) / math.sqrt(40))
    # without the arrays (another store), the same call falls back to the seeds, and says so
    assert compare(a, b, "test_nll_iw", arrays_dir=tmp_path / "none").paired_on == "seeds"


def test_compare_pairs_terms_gaps_and_negated_metrics_on_images(tmp_path):
    rng = np.random.default_rng(1)
    a, b = select(ROWS, label="A"), select(ROWS, label="B")
    kept = {}
    for row in a + b:
        kept[row["id"]] = {"test_log_likelihood": -rng.gamma(50.0, 2.0, size=30),
                           "test_elbo": -rng.gamma(52.0, 2.0, size=30),
                           "test_kl_z1": rng.gamma(5.0, 1.0, size=30)}
        save_run_arrays(tmp_path, row["id"], **kept[row["id"]])

    def expected(values):  # per image: a's minus b's, averaged over the three seeds
        return np.mean([values(kept[ra["id"]]) - values(kept[rb["id"]])
                        for ra, rb in zip(a, b)], axis=0).mean()

    gap = compare(a, b, "gap", arrays_dir=tmp_path)
    assert gap.paired_on == "images" and gap.diff == pytest.approx(
        expected(lambda k: k["test_log_likelihood"] - k["test_elbo"]))
    level = compare(a, b, "test_kl_z1", arrays_dir=tmp_path)
    assert level.paired_on == "images" and level.diff == pytest.approx(
        expected(lambda k: k["test_kl_z1"]))
    negated = compare(a, b, "-test_elbo", arrays_dir=tmp_path)
    assert negated.paired_on == "images" and negated.diff == pytest.approx(
        expected(lambda k: -k["test_elbo"]))


def test_markdown_table_formats_headers_notes_and_single_runs():
    rows = [*select(ROWS, label="A"), *select(ROWS, label="B")[:1]]
    table = markdown_table(rows, ["label"], ["test_nll_iw", ("gap", ".1f")],
                           headers={"label": "model", "test_nll_iw": "NLL"},
                           notes={"invertible": {"A": "no", "B": "yes"}})
    lines = table.splitlines()
    assert lines[0] == "| model | runs | NLL | gap | invertible |"
    assert lines[2] == "| A | 3 | 95.00 ± 1.00 | 2.2 ± 0.3 | no |"  # gaps 2, 2.5, 2
    assert lines[3].startswith("| B | 1 | 93.00 | ") and lines[3].endswith(" | yes |")


def test_select_any_of_and_in_order():
    rows = [_row(0, 90.0, -92.0, label="A", group="g1"), _row(1, 91.0, -93.0, label="B", group="g2"),
            _row(2, 89.0, -90.0, label="C", group="g3")]
    assert [r["spec"]["label"] for r in select(rows, group={"g1", "g3"})] == ["A", "C"]
    assert [r["spec"]["seed"] for r in select(rows, order_by="test_nll_iw")] == [2, 0, 1]
    assert [r["spec"]["seed"] for r in select(rows[::-1], order_by="seed")] == [0, 1, 2]


def test_negated_and_spec_derived_metrics():
    row = _row(0, 95.0, -97.0)
    row["metrics"]["test_rec"] = -80.0
    assert metric_value(row, "-test_rec") == 80.0
    assert metric_value(row, "-neg_elbo") == -97.0
    row["metrics"].update(train_elbo=-90.0, best_epoch=41)
    assert metric_value(row, "train_test_gap") == 7.0  # the test bound 7 nats below training's
    assert metric_value(row, "epoch_kept") == 42
    spec = RunSpec(model="ddgm", model_config={"steps": 10, "schedule": "log-snr",
                                               "log_snr_1": 2.0, "log_snr_T": -5.0})
    ddgm = make_row(spec)
    ddgm.update(status="ok", metrics={})
    assert metric_value(ddgm, "rho_1") == pytest.approx(2.0)
    assert metric_value(ddgm, "rho_T") == pytest.approx(-5.0)
    assert metric_value(ddgm, "negative_log_snr_steps") == 7  # 2 - 7 (t - 1) / 9 < 0 from t = 4
    assert metric_value(ddgm, "z1_noise_sd") == pytest.approx(math.sqrt(1 / (1 + math.e ** 2)))
    with pytest.raises(ValueError, match="got 'rho_1'"):
        metric_value(row, "rho_1")  # a VAE has no log-SNR


def test_markdown_table_shows_each_mean_missing_and_orders():
    import copy

    rows = copy.deepcopy([*select(ROWS, label="A"), *select(ROWS, label="B", status=None)])
    for r in select(rows, label="B"):
        r["metrics"]["sampling_seconds"] = 0.5
    table = markdown_table(rows, ["label"],
                           [("test_nll_iw", ".1f", "each"), ("seed", "d", "mean"),
                            ("sampling_seconds", ".2f")], order=["B", "A"])
    lines = table.splitlines()
    assert lines[2] == "| B | 3 (+1 failed) | 93.0, 93.5, 92.0 | – | 0.50 ± 0.00 |"
    assert lines[3] == "| A | 3 | 95.0, 96.0, 94.0 | – | – |"
    assert markdown_table(rows, ["label"], ["test_nll_iw"], sort="test_nll_iw"
                          ).splitlines()[2].startswith("| B |")
    with pytest.raises(ValueError, match="show must be one of"):
        markdown_table(rows, ["label"], [("test_nll_iw", ".1f", "median")])


def test_mean_image_mse_is_the_error_of_the_mean_image():
    import torch

    from intro_dgm.protocol import mean_image_mse

    train = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
    test = torch.tensor([[1.0, 3.0], [3.0, 3.0]])  # the mean image is (1, 3)
    assert mean_image_mse(train, test) == pytest.approx((0 + 0 + 4 + 0) / 4)


def test_ranked_labels_and_their_rank_correlation():
    from intro_dgm.protocol import rank_correlation, ranked

    assert ranked(ROWS, "test_nll_iw") == ["B", "A"]  # means 92.83 and 95.00
    assert ranked(ROWS, "-test_nll_iw") == ["A", "B"]
    rows = [_row(s, nll, -nll - gap, label=name) for s in (0, 1)
            for name, nll, gap in (("A", 90, 1), ("B", 91, 2), ("C", 92, 3))]
    assert rank_correlation(rows, "test_nll_iw", "gap") == pytest.approx(1.0)
    assert rank_correlation(rows, "test_nll_iw", "-gap") == pytest.approx(-1.0)


def test_a_stored_model_comes_back_with_its_weights(tmp_path):
    import torch

    from intro_dgm.protocol import (ResultsStore, run_and_store, state_arrays,
                                    stored_model)
    from intro_dgm.training import TrainConfig

    store = ResultsStore(tmp_path / "toy_results.jsonl")
    spec = RunSpec(model="vdm", model_config={"hidden": [8], "steps": 3, "embedding_dim": 4},
                   train=TrainConfig(max_epochs=1), k=2, threads=1, device="cpu")
    row, result = run_and_store(spec, store, progress=False,
                                after=lambda r: state_arrays(r.model))
    model = stored_model(store, row)
    assert type(model) is type(result.model) and not model.training
    for key, value in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.cpu()), key
    plain = run_and_store(RunSpec(model_config={"latent_dim": 2, "hidden": [8]},
                                  train=TrainConfig(max_epochs=1), k=2, threads=1,
                                  device="cpu"), store, progress=False)[0]
    with pytest.raises(ValueError, match="without its weights"):
        stored_model(store, plain)
    # weights too large for the wheel sit in a file of their own beside the row's arrays
    from intro_dgm.models import build_model
    from intro_dgm.protocol import save_run_arrays

    torch.manual_seed(5)
    model = build_model("vae", {"latent_dim": 2, "hidden": [8]})
    save_run_arrays(store.arrays_dir, f"{plain['id']}_state", **state_arrays(model))
    back = stored_model(store, plain)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_select_across_models_and_a_typo():
    ddgm = make_row(RunSpec(model="ddgm", model_config={"data_term": "categorical"}))
    ddgm.update(status="ok", metrics={})
    rows = [ROWS[0], ddgm]
    assert select(rows, {"model_config.data_term": "categorical"}) == [ddgm]
    with pytest.raises(ValueError, match="unknown key 'model_config.data_trem'"):
        select(rows, {"model_config.data_trem": "categorical"})


def test_image_pairs_report_median_trimmed_share_and_the_unpaired_se(tmp_path):
    rng = np.random.default_rng(2)
    a, b = select(ROWS, label="A")[:1], select(ROWS, label="B")[:1]
    hard = rng.gamma(50.0, 2.0, size=200)  # the images' difficulty, shared by both models
    la, lb = -hard - rng.normal(0, 1, 200), -hard - rng.normal(0.5, 1, 200)
    la[0] -= 1000.0  # one image that model A scores terribly: a long tail
    for row, ll in ((a[0], la), (b[0], lb)):
        # the validation values: the odd images, without the tail
        save_run_arrays(tmp_path, row["id"], test_log_likelihood=ll, val_log_likelihood=ll[1::2])
    c = compare(a, b, "test_nll_iw", arrays_dir=tmp_path)
    d = -(la - lb)
    assert c.median == pytest.approx(np.median(d)) and c.positive_share == (d > 0).mean()
    assert c.trimmed == pytest.approx(np.sort(d)[2:-2].mean())  # 1 % of 200: two each end
    assert c.diff > 4 and c.trimmed < 0  # the tail flips the sign of the mean, not the rest
    assert c.se_unpaired == pytest.approx(math.sqrt((la.var(ddof=1) + lb.var(ddof=1)) / 200))
    val = compare(a, b, "test_nll_iw", arrays_dir=tmp_path, split="val")
    assert val.n == 100 and val.diff == pytest.approx(-(la[1::2] - lb[1::2]).mean())
    assert val.se_unpaired > 3 * val.se  # pairing removes the shared difficulty
    with pytest.raises(ValueError, match="split must be one of test, val"):
        compare(a, b, "test_nll_iw", arrays_dir=tmp_path, split="train")
    with pytest.raises(ValueError, match="needs the per-example values"):
        compare(a, b, "test_nll_iw", split="val")
    # over seeds, the image-level fields are not defined
    assert math.isnan(compare(select(ROWS, label="A"), select(ROWS, label="B"),
                              "test_nll_iw").median)


def test_example_values_describe_and_the_example_table(tmp_path):
    row = select(ROWS, label="A")[0]
    ll = -np.arange(1.0, 201.0)
    ll[-1] = -1e6
    save_run_arrays(tmp_path, row["id"], test_log_likelihood=ll, test_elbo=ll - 2.0)
    nll = example_values(row, "test_nll_iw", tmp_path)
    assert nll.dtype == np.float64 and nll.tolist() == (-ll).tolist()
    assert example_values(row, "gap", tmp_path).tolist() == [2.0] * 200
    d = describe(nll)
    assert (d.n, d.median) == (200, 100.5) and d.mean == pytest.approx(-ll.mean())
    assert d.trimmed == pytest.approx(np.arange(3.0, 199.0).mean())  # 2 cut at each end
    assert d.se == pytest.approx(nll.std(ddof=1) / math.sqrt(200))
    assert f"{d:.1f}" == f"{d.mean:.1f} (median 100.5, trimmed 100.5)"
    with pytest.raises(ValueError, match="keeps no per-example val values"):
        example_values(row, "test_nll_iw", tmp_path, split="val")
    with pytest.raises(ValueError, match="finite"):
        describe([1.0, math.inf])
    table = example_table([row], ["test_nll_iw"], tmp_path, headers={"label": "model",
                                                                     "test_nll_iw": "NLL"})
    assert table.splitlines()[0] == ("| model | runs | NLL, mean | NLL, median "
                                     "| NLL, trimmed mean |")
    assert table.splitlines()[2] == f"| A | 1 | {d.mean:,.2f} | 100.50 | 100.50 |"
    with pytest.raises(ValueError, match="statistics must be among"):
        example_table([row], ["test_nll_iw"], tmp_path, ["mode"])


def test_trend_is_the_slope_at_the_end_of_a_curve_and_its_noise():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.5, 200)
    curve = np.r_[np.linspace(200, 100, 170), np.linspace(100, 97, 30)] + noise
    t = trend(curve, last=30)
    # the last 30 points fall 3 nats over 29 steps; white noise of sd 0.5
    assert t.slope == pytest.approx(-3 / 29, abs=0.04) and t.noise == pytest.approx(0.5, rel=0.3)
    with pytest.raises(ValueError, match="fewer than last=30"):
        trend(curve[:10])


def test_markdown_rows_lays_out_given_cells():
    assert markdown_rows(["a", "b"], [[1, "x"], ["2.50", "y"]]).splitlines() == [
        "| a | b |", "|---|---|", "| 1 | x |", "| 2.50 | y |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells, the headers 2"):
        markdown_rows(["a", "b"], [[1]])
