"""Evaluation: metrics against scikit-learn and hand-computed cases (ties, one class, tiny strata),
Wilson intervals against known values, bootstrap coverage on synthetic data, leakage and shortcut
checks, bad inputs, and the end-to-end command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import assert_png
from lensaudit.cli import main
from lensaudit.evaluate import (
    EvalConfig,
    EvaluationInputError,
    LeakageError,
    MetricError,
    bootstrap_auc,
    bootstrap_auc_blocks,
    calibration,
    evaluate,
    load_result,
    pr_auc,
    precision_at_prevalence,
    roc_auc,
    shortcut_gates,
    split_leakage,
    summary_lines,
    threshold_at_fpr,
    weighted_auc,
    wilson_interval,
)
from lensaudit.evaluate.strata import stratify


def test_auc_and_ap_against_sklearn_including_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = rng.integers(5, 300)
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.normal(y * 0.7, 1), 1)  # rounding makes many ties
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_hand_computed_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75
    assert pr_auc([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    with pytest.raises(MetricError, match="both classes"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(MetricError, match="non-finite"):
        roc_auc([0, 1], [0.1, np.nan])
    assert precision_at_prevalence(0.8, 0.01, 1e-3) == pytest.approx(0.8e-3 / (0.8e-3 + 0.01 * 0.999))
    # at most floor(0.25 * 8) = 2 negatives at or above the threshold
    t = threshold_at_fpr([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 0.25)
    assert 0.6 < t <= 0.6000001
    cal = calibration([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], n_bins=2)
    assert cal["ece"] == pytest.approx(0.5 * 0.15 + 0.5 * 0.2) and cal["mce"] == pytest.approx(0.2)
    with pytest.raises(MetricError, match="both classes"):
        calibration([1, 1], [0.5, 0.6])


def test_wilson_known_values():
    lo, hi = wilson_interval(5, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert float(lo) == 0 and float(hi) == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert float(lo) == pytest.approx(0.7225, abs=1e-4) and float(hi) == pytest.approx(1.0)
    lo, _ = wilson_interval(0, 0)
    assert np.isnan(lo)


def test_weighted_and_block_auc_match_sklearn_weights():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200).astype(bool)
    s = np.round(rng.normal(y * 1.0, 1), 1)
    w = rng.integers(0, 4, (3, 200)).astype(float)
    for r in range(3):
        assert weighted_auc(y, s, w[r : r + 1])[0] == pytest.approx(roc_auc_score(y, s, sample_weight=w[r]))
    b = bootstrap_auc_blocks(y.astype(int), s, np.arange(200) // 10, n_boot=200, seed=1)
    assert abs(np.median(b) - roc_auc_score(y, s)) < 0.03 and b.std() > 0


def test_bootstrap_matches_naive_resampling_distribution():
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.normal(y * 0.8, 1), 1)
    fast = bootstrap_auc(y, s, 3000, seed=2)
    pos, neg = s[y == 1], s[y == 0]
    lab = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    naive = np.array([roc_auc_score(lab, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
                      for _ in range(1500)])
    assert fast.mean() == pytest.approx(naive.mean(), abs=0.003)
    assert fast.std() == pytest.approx(naive.std(), rel=0.08)


def test_bootstrap_95_percent_intervals_cover_the_truth_93_to_97_percent():
    d = 1.0
    truth = norm.cdf(d / np.sqrt(2))  # binormal AUC
    rng = np.random.default_rng(11)
    hits, draws = 0, 800
    for k in range(draws):
        y = np.r_[np.ones(120, int), np.zeros(360, int)]
        s = np.r_[rng.normal(d, 1, 120), rng.normal(0, 1, 360)]
        b = bootstrap_auc(y, s, 400, seed=k)
        lo, hi = np.percentile(b, [2.5, 97.5])
        hits += lo <= truth <= hi
    assert 0.93 <= hits / draws <= 0.97, hits / draws


def test_planted_leak_fails_the_leakage_check():
    m = pd.DataFrame({"id": ["a", "b", "c", "d"], "cutout_ref": ["1", "2", "3", "4"], "split": ["train", "train", "val", "val"],
                      "healpix_128": [1, 2, 3, 4], "label": [1, 0, 1, 0]})
    assert split_leakage(m)["passed"]
    leak = m.assign(healpix_128=[1, 2, 2, 4])  # pixel 2 in train and val
    with pytest.raises(LeakageError, match="train\\|val\\|healpix_128"):
        split_leakage(leak)
    with pytest.raises(LeakageError, match="id"):
        split_leakage(m.assign(id=["a", "b", "a", "d"]))


def _synthetic(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    m = pd.DataFrame({"id": [f"o{i}" for i in range(n)], "label": y, "split": np.where(np.arange(n) % 3 == 0, "val", "train"),
                      "tier": np.where(y == 1, np.where(rng.random(n) < 0.5, "A", "B"), np.where(rng.random(n) < 0.8, "N1", "N2")),
                      "type": rng.choice(["DEV", "SER", "REX"], n), "nobs_z_bin": rng.choice(["3-5", "6-10"], n),
                      "psfsize_r": rng.uniform(0.9, 1.8, n), "psfdepth_r": 10 ** rng.uniform(2.5, 3.5, n),
                      "ebv": rng.uniform(0, 0.1, n), "confuser_category": "", "cutout_ref": [f"r{i}" for i in range(n)]})
    m["healpix_128"] = np.arange(n) // 3 * 3 + (m["split"] == "val").astype(int)  # pixels never shared between splits
    m.loc[(m.label == 0) & (m.tier == "N2"), "confuser_category"] = "ring"
    logit = rng.normal(np.where(y == 1, 1.5, -1.5), 1.2)
    p = pd.DataFrame({"id": m["id"], "logit": logit, "probability": 1 / (1 + np.exp(-logit))})
    return m, p


def test_strata_below_min_count_are_insufficient():
    m, p = _synthetic()
    df = m.merge(p, on="id")
    df.loc[df.index[:3], "type"] = "PSF"  # a tiny stratum
    t = stratify(df, "type", EvalConfig(min_count=10, n_boot=200))
    tiny = t[t.value == "PSF"]
    assert (tiny.status == "insufficient").all() and tiny.recall.isna().all() and tiny.auc.isna().all()
    big = t[t.value == "DEV"]
    assert (big.status == "ok").all() and big.recall.notna().all()
    sub = df[df.type == "DEV"]
    assert big.auc.iloc[0] == pytest.approx(roc_auc_score(sub.label, sub.logit))
    k = ((sub.label == 1) & (sub.probability >= 0.3)).sum()
    lo, hi = wilson_interval(k, int(sub.label.sum()))
    row = big[big.threshold == 0.3].iloc[0]
    assert (row.recall, row.recall_lo95, row.recall_hi95) == pytest.approx((k / sub.label.sum(), float(lo), float(hi)))


def test_bad_prediction_inputs(tmp_path):
    m, p = _synthetic()
    with pytest.raises(EvaluationInputError, match="not in the manifest"):
        evaluate(pd.concat([p, pd.DataFrame({"id": ["zz"], "logit": [0.0], "probability": [0.5]})]), m, tmp_path)
    with pytest.raises(EvaluationInputError, match="have no score"):
        evaluate(p.iloc[3:], m, tmp_path)
    bad = p.copy()
    bad.loc[0, "probability"] = 1.5
    bad.loc[1, "probability"] = np.nan
    with pytest.raises(EvaluationInputError, match=r"column 'probability': 2 row\(s\) NaN or outside \[0, 1\]"):
        evaluate(bad, m, tmp_path)
    with pytest.raises(EvaluationInputError, match="no positives"):
        evaluate(p, m.assign(label=0), tmp_path)


@pytest.mark.slow   # end to end (left out of mutation runs: the functions have unit tests)
def test_evaluate_end_to_end_writes_metrics_tables_figures(tmp_path, capsys):
    m, p = _synthetic(1500)
    m.to_parquet(tmp_path / "m.parquet", index=False)
    p.to_parquet(tmp_path / "p.parquet", index=False)
    assert main(["evaluate", "--preds", str(tmp_path / "p.parquet"), "--manifest", str(tmp_path / "m.parquet"),
                 "--out", str(tmp_path / "ev"), "--n-boot", "300"]) == 0
    text = capsys.readouterr().out
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    val = m[m.split == "val"].merge(p, on="id")
    assert res["overall"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(val.label, val.logit))
    # the bootstrap interval has the width of the Hanley-McNeil standard error
    a, n1, n0 = res["overall"]["roc_auc"]["value"], int(val.label.sum()), int((1 - val.label).sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    ci = res["overall"]["roc_auc"]["bootstrap"]["ci95"]
    assert (ci[1] - ci[0]) == pytest.approx(2 * 1.96 * se, rel=0.25)
    for line in text.splitlines()[1:]:
        if line.startswith("{"):
            continue
        assert "insufficient" in line or ("[" in line and "(" in line), line  # interval and count on every line
    for f in ("roc_pr.png", "reliability.png", "fpr_by_confuser.png", "metrics_vs_conditions.png"):
        assert_png(tmp_path / "ev" / f)
    assert res["figures"] == ["roc_pr.png", "reliability.png", "fpr_by_confuser.png", "metrics_vs_conditions.png"]
    conf = pd.read_parquet(tmp_path / "ev" / "confuser_fpr.parquet")
    neg = val[val.label == 0].assign(cat=lambda d: d.confuser_category.replace("", "none"))
    for _, r in conf[conf.threshold == 0.5].iterrows():
        g = neg[neg.cat == r.confuser_category]
        assert r.n_neg == len(g) and r.n_above == int((g.probability >= 0.5).sum())
    fail = pd.read_parquet(tmp_path / "ev" / "failures.parquet")
    worst = fail[(fail.failure == "high_scoring_negative") & (fail.type == "DEV")].probability.max()
    assert worst == neg[neg.type == "DEV"].probability.max()
    assert len(pd.read_parquet(tmp_path / "ev" / "strata_psfsize_r_bin.parquet")) > 0
    tiers = pd.read_parquet(tmp_path / "ev" / "strata_tier.parquet")
    assert set(tiers.value) == {"A", "B", "N1", "N2"}
    # metrics.json reads back into the typed result, and the summary is the same from either
    back = load_result(tmp_path / "ev" / "metrics.json")
    assert back.overall.roc_auc.value == res["overall"]["roc_auc"]["value"]
    assert summary_lines(back)[0].startswith("split val")
    assert "\n".join(summary_lines(back)) in text


def test_shortcut_gates_flag_a_planted_shortcut():
    rng = np.random.default_rng(0)
    n = 200
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    cubes = rng.normal(0, 1, (n, 3, 41, 41)).astype(np.float32)
    clean = shortcut_gates(cubes, y, n_boot=200)
    assert all(g["status"] == "green" for g in clean), clean
    cubes[y == 1, :, 18:23, 18:23] += 2.0  # positives have brighter cores: a host shortcut
    planted = {g["gate"]: g for g in shortcut_gates(cubes, y, n_boot=200)}
    assert planted["core_r4"]["status"] == "red" and planted["core_r4"]["ci95"][0] > 0.7


# ----------------------------------------------------------------------------- detectability, saliency
def _stamps(n, ring_amp, coherent=True, seed=0):
    from lensaudit.evaluate.detectability import detectability_features  # noqa: F401

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:101, 0:101] - 50.0
    r = np.hypot(xx, yy)
    gal = 5 * np.exp(-0.5 * (r / 3) ** 2)
    arc = np.exp(-0.5 * ((r - 9) / 1.0) ** 2) * (np.arctan2(yy, xx) > 0.5)  # half ring: not azimuthally symmetric
    cubes = rng.normal(0, 0.1, (n, 3, 101, 101)) + gal
    if coherent:
        cubes += ring_amp * arc
    else:  # structure whose sign flips from band to band: not a physical arc
        cubes[:, 0] += ring_amp * arc
        cubes[:, 1] -= ring_amp * arc
        cubes[:, 2] += ring_amp * arc
    return cubes


def test_detectability_features_separate_arcs_from_smooth_hosts():
    from lensaudit.evaluate.detectability import calibrate_threshold, decompose, detectability_features

    smooth = detectability_features(_stamps(20, 0.0))
    faint = detectability_features(_stamps(20, 0.3, seed=3))   # arc peak 3 sigma per pixel
    arcs = detectability_features(_stamps(20, 1.0, seed=1))
    anti = detectability_features(_stamps(20, 1.0, coherent=False, seed=2))
    assert smooth["detectability"].abs().max() < 6       # residual energy consistent with noise
    assert faint["detectability"].min() > 6 and arcs["detectability"].min() > 100
    assert arcs["coherence"].min() > 0.5 and smooth["coherence"].abs().max() < 0.2 and anti["coherence"].max() < 0
    assert 0.8 < smooth["noise_stability"].mean() < 1.2
    assert calibrate_threshold(np.array([5.0, 6, 7]), np.array([1.0, 2, 3])) == 5.0
    feats = pd.concat([arcs, smooth.iloc[:10], smooth], ignore_index=True)  # smooth positives look like negatives
    df = pd.DataFrame({"id": [f"x{i}" for i in range(50)], "label": np.r_[np.ones(30, int), np.zeros(20, int)],
                       "tier": ["A"] * 30 + ["N1"] * 20, "type": "DEV",
                       "probability": np.r_[np.full(10, 0.9), np.full(10, 0.1), np.full(10, 0.1), np.full(20, 0.05)]})
    summ, strata, diag = decompose(df, feats, 0.5, ("type",), min_count=5)
    # rows 0-19 carry arcs (10 detected, 10 missed but visible); rows 20-29 are smooth positives (not detectable)
    assert summ["n_detectable_but_missed"] == 10 and summ["n_not_detectable"] == 10
    assert summ["n_observable"] == 20 and summ["recall_given_observable"] == 0.5
    assert (diag["diagnosis"].value_counts()["detected"]) == 10


@pytest.mark.slow   # end to end (left out of mutation runs: the functions have unit tests)
def test_grad_cam_maps_and_evaluate_with_checkpoint(tiny, tmp_path):
    from lensaudit.evaluate.saliency import grad_cam
    from lensaudit.train import TrainConfig, load_model, score_manifest, train

    store, m, mpath = tiny
    cfg = TrainConfig.model_validate({"manifest": str(mpath), "store": str(store.root), "out": str(tmp_path / "r"),
                                      "arch": "bottleneck_resnet", "preprocess": {"crop": 48}, "epochs": 2,
                                      "batch_size": 16, "lr": 3e-3, "device": "cpu", "threads": 1,
                                      "model_kwargs": {"stages": [[16, 8, 1, 1], [32, 8, 1, 2]], "stem": 16}})
    train(cfg)
    model, pre, _ = load_model(tmp_path / "r" / "best.pt")
    cams = grad_cam(model, pre, store.get(m["id"][:6].tolist()))
    assert cams.shape == (6, 48, 48) and np.isfinite(cams).all() and cams.min() >= 0
    np.testing.assert_allclose(cams.reshape(6, -1).max(1), 1.0)  # each map normalised to its own peak
    preds = score_manifest(tmp_path / "r" / "best.pt", m, store, device="cpu")
    mm = m.assign(cutout_ref=m["id"], psfsize_r=1.2, psfdepth_r=1000.0, ebv=0.02, type="DEV", nobs_z_bin="3-5",
                  confuser_category="")
    res = evaluate(preds, mm, tmp_path / "ev", EvalConfig(n_boot=200, min_count=5), store=store,
                   checkpoint=tmp_path / "r" / "best.pt")
    with np.load(tmp_path / "ev" / "gradcam.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["cams", "ids"]
        assert z["cams"].shape[0] == len(z["ids"]) == res.saliency.n_maps > 0
    assert res.saliency.galleries == ["gallery_high_scoring_negative.png", "gallery_low_scoring_positive.png"]
    assert_png(tmp_path / "ev" / "gallery_low_scoring_positive.png", (100, 100))
    assert res.detectability.n_pos == int((mm[mm.split == "val"].label == 1).sum())


def test_recall_at_fpr_bootstrap_with_reestimated_threshold_matches_naive():
    from lensaudit.evaluate import bootstrap_recall_at_fpr

    rng = np.random.default_rng(4)
    y = (rng.random(6000) < 0.1).astype(int)
    s = np.round(rng.normal(y * 2.0, 1), 2)
    rec, thr = bootstrap_recall_at_fpr(y, s, 0.01, 2000, seed=3)
    pos, neg = s[y == 1], s[y == 0]
    naive_r, naive_t = [], []
    for _ in range(800):
        p, n = rng.choice(pos, pos.size), rng.choice(neg, neg.size)
        t = threshold_at_fpr(n, 0.01)
        naive_r.append((p >= t).mean())
        naive_t.append(t)
    assert not np.isnan(rec).any()
    assert np.mean(rec) == pytest.approx(np.mean(naive_r), abs=0.01)
    assert np.std(rec) == pytest.approx(np.std(naive_r), rel=0.15)
    assert np.median(thr) == pytest.approx(np.median(naive_t), abs=0.02)


def test_block_bootstrap_of_proportions_widens_for_correlated_groups():
    from lensaudit.evaluate.bootstrap import bootstrap_proportion, bootstrap_ratio_blocks

    # 40 pixels of 25 objects each; within a pixel all objects share the outcome (perfect correlation)
    rng = np.random.default_rng(0)
    outcome = rng.random(40) < 0.5
    k, n = np.where(outcome, 25, 0), np.full(40, 25)
    blocks = bootstrap_ratio_blocks(k, n, 4000, seed=1)
    iid = bootstrap_proportion(int(k.sum()), int(n.sum()), 4000, seed=1)
    assert np.mean(blocks) == pytest.approx(k.sum() / n.sum(), abs=0.01)
    assert np.std(blocks) > 3 * np.std(iid)  # sqrt(25) = 5x in the limit
    # independent groups of one object: the two agree
    k1 = (rng.random(1000) < 0.3).astype(int)
    b1 = bootstrap_ratio_blocks(k1, np.ones(1000), 4000, seed=2)
    assert np.std(b1) == pytest.approx(np.std(bootstrap_proportion(int(k1.sum()), 1000, 4000, seed=2)), rel=0.1)


def test_ap_bootstrap_is_exact_without_resampling_and_matches_naive():
    from lensaudit.evaluate.bootstrap import _ap_from_counts, _cells, bootstrap_ap

    rng = np.random.default_rng(8)
    for _ in range(10):
        y = rng.random(200) < 0.3
        y[:2] = [True, False]
        s = np.round(rng.normal(y * 1.0, 1), 1)
        _, pc, cells = _cells(s[y], s[~y])
        assert _ap_from_counts(pc[None].astype(float), cells[None].astype(float))[0] == pytest.approx(
            average_precision_score(y, s), abs=1e-12)
    y = (rng.random(400) < 0.3).astype(int)
    s = np.round(rng.normal(y * 0.8, 1), 1)
    b = bootstrap_ap(y, s, 3000, seed=1)
    pos, neg = s[y == 1], s[y == 0]
    lab = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    naive = [average_precision_score(lab, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]) for _ in range(1500)]
    assert np.mean(b) == pytest.approx(np.mean(naive), abs=0.005) and np.std(b) == pytest.approx(np.std(naive), rel=0.08)


def test_grad_cam_points_at_the_pixels_that_drive_the_score():
    """A model whose logit is the mean of a ReLU'd 3x3 convolution: Grad-CAM must peak where a
    bright source sits (not flipped, not transposed, at the model's input size)."""
    import torch
    from torch import nn

    from lensaudit.data.preprocess import PreprocessConfig
    from lensaudit.evaluate.saliency import grad_cam

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.fill_(0.1)
        model[0].bias.fill_(-0.5)
        model[4].weight.fill_(1.0)
    cubes = np.random.default_rng(0).normal(0, 0.01, (2, 3, 101, 101)).astype(np.float32)
    cubes[0, :, 70:74, 30:34] += 1.0          # row (y) 70-73, column (x) 30-33
    cubes[1, :, 20:24, 60:64] += 1.0
    pre = PreprocessConfig(r_in_pix=32.5, r_out_pix=45.0, crop=64)   # crop offset (101 - 64) // 2 = 18
    cams = grad_cam(model, pre, cubes)
    assert cams.shape == (2, 64, 64)
    for cam, (y, x) in zip(cams, [(71.5 - 18, 31.5 - 18), (21.5 - 18, 61.5 - 18)], strict=True):
        iy, ix = np.unravel_index(np.argmax(cam), cam.shape)
        assert abs(iy - y) <= 2 and abs(ix - x) <= 2, (iy, ix, y, x)
        assert cam[int(y), int(x)] > 5 * np.median(cam)


@pytest.mark.parametrize("fpr", [0.0, 0.02, 0.1, 0.5, 0.98, 1.0])
def test_recall_at_fpr_bootstrap_replicates_equal_a_brute_force_recount_of_the_same_draws(fpr):
    """An exact oracle: the same multinomial draws (every negative score its own cell: few negatives,
    so all are kept), expanded into resampled score lists, thresholded by threshold_at_fpr and counted."""
    from lensaudit.evaluate import bootstrap_recall_at_fpr

    rng = np.random.default_rng(11)
    neg = np.round(rng.normal(0, 1, 50), 1)           # ties on purpose
    pos = np.round(rng.normal(1.5, 1, 30), 1)
    y, s = np.r_[np.ones(30, int), np.zeros(50, int)], np.r_[pos, neg]
    n_boot = 1100                                      # three chunks of the default 500
    rec, thr = bootstrap_recall_at_fpr(y, s, fpr, n_boot, seed=5)
    assert rec.shape == thr.shape == (n_boot,)
    v, cnt = np.unique(neg, return_counts=True)
    v, cnt = v[::-1], cnt[::-1]
    u, pc = np.unique(pos, return_counts=True)
    draw = np.random.default_rng(5)
    want_r, want_t = [], []
    for lo in range(0, n_boot, 500):
        r = min(500, n_boot - lo)
        cn = draw.multinomial(50, np.r_[cnt, 0] / 50, size=r)[:, : v.size]
        cp = draw.multinomial(30, pc / 30, size=r)
        for i in range(r):
            n_res, p_res = np.repeat(v, cn[i]), np.repeat(u, cp[i])
            t = threshold_at_fpr(n_res, fpr)              # just above the (k+1)-th highest resampled negative
            want_t.append(np.nextafter(t, -np.inf))       # that negative's score itself
            want_r.append((p_res >= t).mean())
    np.testing.assert_array_equal(thr, want_t)
    np.testing.assert_array_equal(rec, want_r)
    # the defaults: 2000 replicates, seed 0
    r0, _ = bootstrap_recall_at_fpr(y, s, fpr)
    assert r0.shape == (2000,) and np.array_equal(r0, bootstrap_recall_at_fpr(y, s, fpr, 2000, 0)[0])


def test_threshold_at_fpr_exact_values_edges_and_precision():
    neg = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]
    # k = floor(fpr x 10) negatives may score at or above t: t just above the (k+1)-th highest
    for fpr, nth in ((0.0, 0.9), (0.05, 0.9), (0.1, 0.8), (0.35, 0.6), (0.99, 0.0)):
        assert threshold_at_fpr(neg, fpr) == np.nextafter(nth, np.inf)
    assert threshold_at_fpr(neg, 1.0) == 0.0                  # every negative may pass: the lowest
    assert threshold_at_fpr([0.5], 0.0) == np.nextafter(0.5, np.inf)
    with pytest.raises(MetricError, match="no negatives"):
        threshold_at_fpr([], 0.1)
    # float32 scores: the threshold is the float64 value just above, not the float32 one
    f32 = np.float32([0.3, 0.7])
    assert threshold_at_fpr(f32, 0.0) == np.nextafter(np.float64(f32[1]), np.inf)


def test_recall_at_fpr_one_selects_every_negative_like_the_point_estimate():
    """FPR 1 lets every negative pass: as threshold_at_fpr does for the point estimate, each replicate's
    threshold is its lowest resampled negative (selected, inclusive), never NaN."""
    from lensaudit.evaluate import bootstrap_recall_at_fpr

    y, s = np.r_[np.ones(5, int), np.zeros(8, int)], np.r_[np.arange(5.0), np.arange(8.0) / 2]
    rec, thr = bootstrap_recall_at_fpr(y, s, 1.0, 400, seed=2)
    assert np.isfinite(rec).all() and np.isfinite(thr).all() and ((rec >= 0) & (rec <= 1)).all()
    # the threshold sits just below a negative score (the lowest of the resample): never above the 8 kept
    assert np.isin(np.nextafter(thr, np.inf), np.arange(8.0) / 2).all()
    assert (thr < 0).mean() > 0.5                      # the negative at 0 is in most resamples (1 - (7/8)^8)


def test_confusion_threshold_at_top_fraction_and_precision_exact():
    import warnings

    from sklearn.metrics import confusion_matrix

    from lensaudit.evaluate.metrics import confusion_at, threshold_at_top_fraction, wilson_interval

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)                      # ties at the threshold on purpose
    for t in (0.3, 0.5, 0.7):
        tn, fp, fn, tp = confusion_matrix(y, s >= t, labels=[0, 1]).ravel()
        assert confusion_at(y, s, t) == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    sc = np.arange(1, 11) / 10.0                           # 0.1 .. 1.0
    assert threshold_at_top_fraction(sc[::-1], 0.25) == 0.8      # the top ceil(2.5) = 3 scores
    assert threshold_at_top_fraction(sc, 0.01) == 1.0 and threshold_at_top_fraction(sc, 1.0) == 0.1
    assert threshold_at_top_fraction(np.float32([0.7, 0.3]), 0.5) == float(np.float32(0.7))
    r32, f32 = np.float32(0.8), np.float32(0.01)
    want = float(r32) * 1e-3 / (float(r32) * 1e-3 + float(f32) * (1 - 1e-3))
    assert precision_at_prevalence(r32, f32, 1e-3) == want                      # float64 arithmetic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(precision_at_prevalence(0.0, 0.0, 1e-3))               # nothing selected: quietly NaN
        lo, hi = wilson_interval(np.array([0, 1, 10]), np.array([0, 10, 10]))   # n = 0: quietly NaN
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and hi[2] == 1.0 and lo[1] > 0
    z = 1.959963984540054                                  # Wilson (1927) for 1 of 10, written out
    centre, half = (1 + z * z / 2) / (10 + z * z), z * np.sqrt(1 * 9 / 10 + z * z / 4) / (10 + z * z)
    assert lo[1] == pytest.approx(centre - half, rel=1e-9) and hi[1] == pytest.approx(centre + half, rel=1e-9)
    # one positive: AP is its precision, as scikit-learn says
    assert pr_auc([0, 1, 0, 0], [0.1, 0.5, 0.7, 0.2]) == pytest.approx(average_precision_score([0, 1, 0, 0], [0.1, 0.5, 0.7, 0.2]))


def test_calibration_curve_fields_bins_and_limits():
    from lensaudit.evaluate.metrics import wilson_interval

    rng = np.random.default_rng(8)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)
    p[0], p[1] = 0.0, 1.0                                   # the closed interval [0, 1] is allowed
    c = calibration(y, p)
    cur = c["curve"]
    assert set(cur) == {"mean_probability", "fraction_positive", "count", "fraction_positive_lo95", "fraction_positive_hi95"}
    assert len(cur["count"]) == 10 and sum(cur["count"]) == 300
    order = np.argsort(p, kind="mergesort")
    bins = np.array_split(order, 10)
    acc = np.array([y[b].mean() for b in bins])
    conf = np.array([p[b].mean() for b in bins])
    np.testing.assert_allclose(cur["fraction_positive"], acc)
    assert c["ece"] == pytest.approx(float(np.sum([len(b) for b in bins] * np.abs(acc - conf)) / 300))
    lo, hi = wilson_interval(np.array([y[b].sum() for b in bins]), np.array([len(b) for b in bins]))
    np.testing.assert_allclose(cur["fraction_positive_lo95"], lo)
    np.testing.assert_allclose(cur["fraction_positive_hi95"], hi)
    for bad in (np.r_[p[:-1], 1.5], np.r_[p[:-1], -0.1]):
        with pytest.raises(MetricError, match=r"\[0, 1\]"):
            calibration(y, bad)
    with pytest.raises(MetricError, match="both classes"):
        calibration(np.zeros(5, int), np.linspace(0, 1, 5))


def test_bin_labels_sort_in_edge_order():
    from lensaudit.evaluate.strata import _bin, bin_order

    edges = (23.5, 24.0, 24.5)
    labels = list(_bin(np.array([24.7, 22.0, 23.7, 24.2]), edges, "mag"))
    assert sorted(set(labels)) != sorted(set(labels), key=bin_order)             # lexical order is wrong
    assert sorted(set(labels), key=bin_order) == ["<23.5mag", "23.5-24.0mag", "24.0-24.5mag", ">=24.5mag"]
    assert sorted(["1.2-1.4arcsec", ">=1.6arcsec", "<1.0arcsec", "1.0-1.2arcsec"], key=bin_order) == \
        ["<1.0arcsec", "1.0-1.2arcsec", "1.2-1.4arcsec", ">=1.6arcsec"]
