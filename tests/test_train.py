"""Training stage: preprocessing regression on a real DR10 cutout, augmentation determinism,
parameter counts, bitwise resume, weighted loss, scoring, the meta-learner's cross-validation,
negative cleaning, and malformed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_png
from lensaudit.cli import main
from lensaudit.config import ConfigError, load_config, validate_config
from lensaudit.data.augment import augment, augment_params
from lensaudit.data.dataset import CutoutDataset, DataError
from lensaudit.data.preprocess import PreprocessConfig, raw_robust
from lensaudit.models import build_model, count_parameters, model_spec
from lensaudit.survey.npz_cutout import read_npz_cutout
from lensaudit.train import CheckpointError, TrainConfig, TrainingError, load_model, score_manifest, train
from lensaudit.train.checkpoint import save_checkpoint
from lensaudit.train.clean import clean_negatives
from lensaudit.train.loop import weighted_bce
from lensaudit.train.meta import MetaConfig, apply_meta, fit_meta_learner, save_meta

REF = json.loads((Path(__file__).parent / "data" / "preprocess_reference.json").read_text())


# ----------------------------------------------------------------------------- preprocessing
def _independent_raw_robust(cube, r_in, r_out):
    out = np.empty_like(cube, dtype=np.float64)
    n = cube.shape[-1]
    for b in range(cube.shape[0]):
        img = np.nan_to_num(cube[b].astype(np.float64))
        vals = [img[y, x] for y in range(n) for x in range(n) if r_in <= np.hypot(x - (n - 1) / 2, y - (n - 1) / 2) < r_out]
        med = np.median(vals)
        mad = np.median(np.abs(np.array(vals) - med))
        out[b] = np.clip((img - med) / (mad + 1e-8), -10, 10)
    return out


@pytest.fixture(scope="module")
def real_cube(reference):
    return read_npz_cutout(reference.path(REF["file"]))[0]


def test_raw_robust_matches_independent_loop_on_real_cutout(real_cube):
    for name, (r_in, r_out) in (("paper", (20, 32)), ("annulus101", (32.5, 45))):
        cfg = PreprocessConfig() if name == "paper" else PreprocessConfig.preset(name)
        got = raw_robust(real_cube, cfg)
        np.testing.assert_allclose(got, _independent_raw_robust(real_cube, r_in, r_out), rtol=2e-5, atol=2e-5)


def test_raw_robust_regression_values_on_real_cutout(real_cube):
    for name, ref in REF["reference"].items():
        out = raw_robust(real_cube, PreprocessConfig() if name == "paper" else PreprocessConfig.preset(name))
        for key, v in ref["pixels"].items():
            b, y, x = map(int, key.split(","))
            assert out[b, y, x] == pytest.approx(v, abs=1e-5), (name, key)
        np.testing.assert_allclose(out.mean(axis=(1, 2)), ref["band_mean"], atol=1e-5)
        assert (np.abs(out) >= 10).mean() == pytest.approx(ref["frac_clipped"], abs=1e-9)


def test_raw_robust_nan_crop_and_bad_config(real_cube):
    c = real_cube.copy()
    c[1, 40:45, 40:45] = np.nan
    out = raw_robust(c, PreprocessConfig(crop=64))
    assert out.shape == (3, 64, 64) and np.isfinite(out).all()
    batch = raw_robust(np.stack([real_cube, c]))
    np.testing.assert_array_equal(batch[0], raw_robust(real_cube))
    np.testing.assert_array_equal(batch[1], raw_robust(c))
    with pytest.raises(ValueError, match="r_in_pix"):
        PreprocessConfig(r_in_pix=40, r_out_pix=30)
    with pytest.raises(ValueError, match="empty"):
        raw_robust(real_cube[:, :30, :30], PreprocessConfig(r_in_pix=40, r_out_pix=45))


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_is_deterministic_per_seed_index_epoch():
    x = np.arange(3 * 5 * 5, dtype=np.float32).reshape(3, 5, 5)
    a, b = augment(x, 1, 7, 3), augment(x, 1, 7, 3)
    np.testing.assert_array_equal(a, b)
    params = {augment_params(1, i, e) for i in range(50) for e in range(4)}
    assert len(params) == 16  # every combination of two flips and four rotations occurs
    changed = sum(not np.array_equal(augment(x, 1, 7, e), augment(x, 1, 7, e + 1)) for e in range(20))
    assert changed > 10  # epochs differ
    hflip, vflip, k = augment_params(2, 3, 4)
    want = x[..., :, ::-1] if hflip else x
    want = want[..., ::-1, :] if vflip else want
    np.testing.assert_array_equal(augment(x, 2, 3, 4), np.rot90(want, k, axes=(-2, -1)))


# ----------------------------------------------------------------------------- models
def test_parameter_counts():
    assert count_parameters(build_model("resnet18")) == 11_177_025
    assert count_parameters(build_model("efficientnet_v2_s")) == 20_178_769
    n = count_parameters(build_model("bottleneck_resnet"))
    assert n == 194_488 and abs(n - model_spec("bottleneck_resnet").reference_params) / 194_433 < 0.001
    for arch in ("resnet18", "efficientnet_v2_s", "bottleneck_resnet"):
        assert build_model(arch).eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 1)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


def test_efficientnet_local_weights_file(tmp_path):
    src = build_model("efficientnet_v2_s")
    torch.save(src.state_dict(), tmp_path / "w.pth")
    m = build_model("efficientnet_v2_s", weights_file=str(tmp_path / "w.pth"))
    k = "features.0.0.weight"
    assert torch.equal(m.state_dict()[k], src.state_dict()[k])
    torch.save({"features.0.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_model("efficientnet_v2_s", weights_file=str(tmp_path / "bad.pth"))


# ----------------------------------------------------------------------------- loss
def test_weighted_bce_against_explicit_formula_and_zero_weight():
    rng = np.random.default_rng(0)
    z, y, w = rng.normal(0, 2, 32), (rng.random(32) < 0.3).astype(float), rng.uniform(0, 2, 32)
    p = 1 / (1 + np.exp(-z))
    want = np.mean(w * -(y * np.log(p) + (1 - y) * np.log(1 - p)))
    got = weighted_bce(torch.tensor(z), torch.tensor(y), torch.tensor(w))
    assert float(got) == pytest.approx(want, rel=1e-5)
    zt = torch.tensor(z, requires_grad=True)
    w0 = torch.tensor(w)
    w0[5] = 0.0
    weighted_bce(zt, torch.tensor(y), w0).backward()
    assert zt.grad[5] == 0 and (zt.grad[:5] != 0).all()


# ----------------------------------------------------------------------------- training
def _cfg(tiny, out, **kw) -> TrainConfig:
    _, _, mpath = tiny
    base = {"manifest": str(mpath), "store": str(tiny[0].root), "out": str(out), "arch": "bottleneck_resnet",
            "model_kwargs": {"stages": [[16, 8, 1, 1], [32, 8, 1, 2]], "stem": 16},
            "preprocess": {"crop": 32}, "epochs": 2, "batch_size": 16, "effective_batch": 32, "lr": 3e-3,
            "schedule": {"kind": "cosine"}, "seed": 3, "device": "cpu", "threads": 1, "checkpoint_every": 1}
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_resume_is_bitwise_identical_to_uninterrupted_training(tiny, tmp_path):
    full = train(_cfg(tiny, tmp_path / "full"))
    train(_cfg(tiny, tmp_path / "part", epochs=1))
    resumed = train(_cfg(tiny, tmp_path / "part"), resume=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_auc"] for h in full["history"]] == [h["val_auc"] for h in resumed["history"]]
    e1 = torch.load(tmp_path / "full" / "epoch_0001.pt", weights_only=True)
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert e1["epoch"] == 0 and e1["val_auc"] == full["history"][0]["val_auc"]
    assert best["val_auc"] == max(h["val_auc"] for h in full["history"]) == full["best_val_auc"]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    info = json.loads((tmp_path / "full" / "run_info.json").read_text())
    assert info["summary"]["best_val_auc"] == full["best_val_auc"] and info["seeds"] == {"train": 3}
    assert "torch" in info["versions"] and info["config_sha256"]


def test_training_learns_the_tiny_problem_and_scoring_reproduces_it(tiny, tmp_path):
    s = train(_cfg(tiny, tmp_path / "r", epochs=6, schedule={"kind": "constant"}))
    assert s["best_val_auc"] > 0.9
    store, m, _ = tiny
    preds = score_manifest(tmp_path / "r" / "best.pt", m, store, features=True, split="val", device="cpu")
    np.testing.assert_allclose(preds["probability"], 1 / (1 + np.exp(-preds["logit"])))
    from sklearn.metrics import roc_auc_score

    lab = m.set_index("id").loc[preds["id"], "label"].to_numpy()
    assert roc_auc_score(lab, preds["logit"]) == pytest.approx(s["best_val_auc"], abs=1e-9)
    assert len(preds["features"][0]) == 32  # the final Linear's input width
    again = score_manifest(tmp_path / "r" / "best.pt", m, store, split="val", device="cpu")
    np.testing.assert_array_equal(again["logit"], preds["logit"])


def test_malformed_training_inputs(tiny, tmp_path, monkeypatch):
    store, m, mpath = tiny
    with pytest.raises(ConfigError, match="extra|not permitted"):
        validate_config({"manifest": "m", "store": "s", "colour": 1}, TrainConfig)
    with pytest.raises(ConfigError, match="multiple of batch_size"):
        validate_config({"manifest": "m", "store": "s", "batch_size": 16, "effective_batch": 40}, TrainConfig)
    (tmp_path / "bad.yaml").write_text("manifest: m\nstore: s\nlr: -1\n")
    with pytest.raises(ConfigError, match="lr"):
        load_config(tmp_path / "bad.yaml", TrainConfig)
    extra = pd.concat([m, pd.DataFrame([{**m.iloc[0].to_dict(), "id": "ghost"}])], ignore_index=True)
    with pytest.raises(DataError, match=r"1 cutout\(s\) not in store.*ghost"):
        CutoutDataset(extra, store, PreprocessConfig(), "train")
    ds = CutoutDataset(extra, store, PreprocessConfig(), "train", on_missing="skip")
    assert ds.missing == ["ghost"] and len(ds) == (m.split == "train").sum()
    # a checkpoint of another architecture
    save_checkpoint(tmp_path / "r18.pt", arch="resnet18", model_kwargs={}, preprocess=PreprocessConfig().model_dump(),
                    model=build_model("resnet18").state_dict())
    with pytest.raises(CheckpointError, match="holds a 'resnet18' model"):
        load_model(tmp_path / "r18.pt", arch="bottleneck_resnet")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    # NaNs reaching a batch stop training with the ids named
    import lensaudit.data.dataset as dsmod

    real = dsmod.preprocess
    monkeypatch.setattr(dsmod, "preprocess", lambda x, cfg: np.full_like(real(x, cfg), np.nan))
    with pytest.raises(TrainingError, match="non-finite input pixels in cutout"):
        train(_cfg(tiny, tmp_path / "nan", epochs=1))


def test_cli_train_and_score(tiny, tmp_path, capsys):
    cfg = _cfg(tiny, tmp_path / "cli", epochs=1)
    (tmp_path / "c.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    info = json.loads((tmp_path / "cli" / "run_info.json").read_text())
    assert "best_val_auc" in info["summary"] and info["config_file_sha256"]
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(tmp_path / "cli" / "last.pt"), "--manifest", str(tiny[2]), "--store",
                 str(tiny[0].root), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"]) == 0
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == len(tiny[1])


# ----------------------------------------------------------------------------- meta-learner, cleaning
def _fake_preds(m: pd.DataFrame, seed: int, noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": m["id"], "logit": (m["label"] * 2 - 1) + rng.normal(0, noise, len(m))})


def test_meta_learner_out_of_fold_predictions_never_see_their_labels(tmp_path):
    rng = np.random.default_rng(1)
    n = 240
    m = pd.DataFrame({"id": [f"o{i}" for i in range(n)], "label": (rng.random(n) < 0.4).astype(int),
                      "healpix_128": rng.integers(0, 40, n), "psfsize_r": rng.uniform(1, 1.6, n)})
    preds = {"a": _fake_preds(m, 2, 1.2), "b": _fake_preds(m, 3, 1.5)}
    cfg = MetaConfig(folds=4, epochs=150, seed=5)
    oof, state, rep = fit_meta_learner(preds, m, cfg, ("psfsize_r",))
    assert oof["probability"].notna().all()
    assert rep["auc_meta_out_of_fold"] > max(rep["auc_per_model"].values()) - 0.02
    # whole pixels share a fold
    assert (oof.assign(p=m["healpix_128"]).groupby("p")["fold"].nunique() == 1).all()
    # flipping the labels of fold 0 must not change fold 0's out-of-fold predictions
    m2 = m.copy()
    f0 = (oof["fold"] == 0).to_numpy()
    m2.loc[f0, "label"] = 1 - m2.loc[f0, "label"]
    oof2, _, _ = fit_meta_learner(preds, m2, cfg, ("psfsize_r",))
    np.testing.assert_array_equal(oof2["probability"][f0], oof["probability"][f0])
    assert not np.array_equal(oof2["probability"][~f0], oof["probability"][~f0])
    save_meta(state, tmp_path / "meta.pt")
    applied = apply_meta(tmp_path / "meta.pt", preds, m)
    assert applied["probability"].between(0, 1).all() and len(applied) == n
    with pytest.raises(ValueError, match="no score"):
        fit_meta_learner({"a": preds["a"].iloc[:-3], "b": preds["b"]}, m, cfg)


def test_negative_cleaning_removes_exactly_the_flagged(tiny, tmp_path):
    from lensaudit.catalog.manifest import write_manifest

    store, m, _ = tiny
    write_manifest(m, tmp_path / "man.parquet", {"scheme": "t"})
    p = pd.DataFrame({"id": m["id"], "probability": np.linspace(0, 1, len(m))})
    rep = clean_negatives(p, tmp_path / "man.parquet", tmp_path / "clean", 0.4, store)
    cleaned = pd.read_parquet(tmp_path / "clean" / "manifest_cleaned.parquet")
    want = set(m.loc[(m.label == 0) & (p.probability > 0.4), "id"])
    assert rep["n_flagged"] == len(want) > 0
    assert set(m.id) - set(cleaned.id) == want and (cleaned.label == 1).sum() == (m.label == 1).sum()
    assert_png(tmp_path / "clean" / "flagged_previews.png", (150, 100))
    assert set(pd.read_csv(tmp_path / "clean" / "flagged_negatives.csv")["id"]) == want
    with pytest.raises(ValueError, match="threshold"):
        clean_negatives(p, tmp_path / "man.parquet", tmp_path / "c2", 1.5)


def test_models_command_prints_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bottleneck_resnet" in out and "194,488 parameters (published: 194,433)" in out
    assert "11,177,025" in out and "20,178,769" in out


def test_worker_processes_augment_with_the_right_epoch(tiny, tmp_path):
    """Persistent DataLoader workers never see set_epoch: the epoch must travel with the index."""
    a = train(_cfg(tiny, tmp_path / "w0", epochs=2))
    b = train(_cfg(tiny, tmp_path / "w1", epochs=2, num_workers=1))
    wa = torch.load(tmp_path / "w0" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "w1" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["val_auc"] for h in a["history"]] == [h["val_auc"] for h in b["history"]]
