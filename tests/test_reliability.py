"""Reliability: nothing lost, mixed or unreadable, whatever the id, the signal or the second process.

One test per defect found by a hostile-user session (issue 16); each failed before its fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from lensaudit.cli import main
from lensaudit.cutouts import CutoutStore, FetchConfig, export_cutouts, fetch_manifest
from lensaudit.mock.server import Fault, serve_in_thread

FAST = dict(rate_per_s=1000.0, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0, concurrency=2)


def _cubes(n, seed=0):
    return np.random.default_rng(seed).normal(0, 0.01, (n, 3, 101, 101)).astype(np.float32)


# ----------------------------------------------------------------------------- 1. non-ASCII ids
def test_non_ascii_ids_round_trip_through_fetch_verify_get_export_and_refetch(tmp_path, render):
    ids = ["lens_ü", "DESI-π-001", "日本_3", "plain"]
    m = pd.DataFrame({"id": ids, "ra": [20.0, 20.01, 20.02, 20.03], "dec": [1.0] * 4})
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render) as srv:
        rep = fetch_manifest(m, store, FetchConfig(service_url=srv.url, **FAST))
        assert rep.n_stored == 4
        again = CutoutStore(tmp_path / "s")
        assert again.verify()["ok"] and again.verify()["n_cutouts"] == 4
        assert again.get(["日本_3"]).shape == (1, 3, 101, 101)
        written = export_cutouts(again, ids, tmp_path / "out", "npz")
        assert len({p.name for p in written}) == 4
        rep2 = fetch_manifest(m, again, FetchConfig(service_url=srv.url, **FAST))
        assert rep2.n_already_stored == 4 and rep2.n_requested == 0


def test_ids_with_control_characters_are_rejected_at_manifest_validation(tmp_path):
    from lensaudit.artifacts import ManifestError, check_manifest

    with pytest.raises(ManifestError, match=r"invalid id.*control characters"):
        check_manifest(pd.DataFrame({"id": ["ok", "bad\nid"], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}))
    with pytest.raises(ManifestError, match=r"invalid id.*empty"):
        check_manifest(pd.DataFrame({"id": ["ok", "  "], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}))


# ----------------------------------------------------------------------------- 2. moved coordinates
def test_fetch_refuses_or_refetches_ids_whose_coordinates_moved(tmp_path, render):
    from lensaudit.cutouts.client import MovedCoordinatesError

    m = pd.DataFrame({"id": ["a", "b", "c"], "ra": [20.0, 20.01, 20.02], "dec": [1.0] * 3})
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render) as srv:
        fetch_manifest(m, store, FetchConfig(service_url=srv.url, **FAST))
        old = store.get(["a", "b", "c"])
        moved = m.assign(ra=m["ra"] + np.array([0.5, 0.0, 1e-6]))  # a moved by 0.5 deg; c by 0.0036 arcsec
        with pytest.raises(MovedCoordinatesError, match=r"1 stored cutout\(s\).*'a'.*1800"):
            fetch_manifest(moved, store, FetchConfig(service_url=srv.url, **FAST))
        rep = fetch_manifest(moved, store, FetchConfig(service_url=srv.url, moved="refetch", **FAST))
        assert rep.n_requested == 1 and rep.n_replaced == 1 and rep.n_already_stored == 2
    s2 = CutoutStore(tmp_path / "s")
    row = s2.index.set_index("id").loc["a"]
    assert row["ra"] == pytest.approx(20.5) and s2.verify()["ok"] and len(s2) == 3
    assert not np.array_equal(s2.get(["a"])[0], old[0])
    np.testing.assert_array_equal(s2.get(["b"])[0], old[1])


def test_dataset_refuses_a_store_whose_stamps_are_elsewhere(tmp_path):
    from lensaudit.data.dataset import CutoutDataset, DataError
    from lensaudit.data.preprocess import PreprocessConfig

    store = CutoutStore(tmp_path / "s", create=True)
    with store.writer() as w:
        for i, c in enumerate(_cubes(4)):
            w.add(f"x{i}", c, ra=10.0 + i * 0.01, dec=0.0)
    m = pd.DataFrame({"id": [f"x{i}" for i in range(4)], "ra": 10.0 + np.arange(4) * 0.01 + [0, 0, 0.1, 0],
                      "dec": 0.0, "label": [0, 1, 0, 1], "split": "train"})
    with pytest.raises(DataError, match=r"1 cutout\(s\) stored at other coordinates.*x2"):
        CutoutDataset(m, CutoutStore(tmp_path / "s"), PreprocessConfig(), "train")


# ----------------------------------------------------------------------------- 3. training runs
def _train_cfg(tiny, out, **kw):
    from lensaudit.train import TrainConfig

    _, _, mpath = tiny
    base = {"manifest": str(mpath), "store": str(tiny[0].root), "out": str(out), "arch": "bottleneck_resnet",
            "model_kwargs": {"stages": [[8, 4, 1, 1]], "stem": 8}, "preprocess": {"crop": 32}, "epochs": 1,
            "batch_size": 32, "lr": 3e-3, "seed": 3, "device": "cpu", "threads": 1}
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_training_refuses_to_overwrite_a_run_without_force(tiny, tmp_path):
    from lensaudit.errors import RunExistsError
    from lensaudit.train import train

    train(_train_cfg(tiny, tmp_path / "r"))
    before = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match="already holds a training run"):
        train(_train_cfg(tiny, tmp_path / "r", lr=1e-3))
    assert (tmp_path / "r" / "last.pt").read_bytes() == before
    train(_train_cfg(tiny, tmp_path / "r", lr=1e-3), force=True)
    assert json.loads((tmp_path / "r" / "run_info.json").read_text())["config"]["lr"] == 1e-3


def test_resume_refuses_a_changed_config_but_allows_more_epochs(tiny, tmp_path):
    from lensaudit.train import CheckpointError, train

    train(_train_cfg(tiny, tmp_path / "r"))
    with pytest.raises(CheckpointError, match=r"config differs.*lr"):
        train(_train_cfg(tiny, tmp_path / "r", epochs=2, lr=1e-3), resume=True)
    s = train(_train_cfg(tiny, tmp_path / "r", epochs=2), resume=True)
    assert [h["epoch"] for h in s["history"]] == [0, 1]


def test_two_training_processes_cannot_share_a_run_folder(tiny, tmp_path):
    from lensaudit.errors import BusyError
    from lensaudit.train.loop import run_lock

    out = tmp_path / "r"
    out.mkdir()
    code = ("import sys, time; from lensaudit.train.loop import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(30)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="another process"):
            with run_lock(out):
                pass
    finally:
        p.kill()
        p.wait()
    with run_lock(out):  # free again once the other process is gone
        pass


# ----------------------------------------------------------------------------- 4. umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    from lensaudit.utils.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        store = CutoutStore(tmp_path / "s", create=True)
        with store.writer() as w:
            w.add("a", _cubes(1)[0], 1.0, 0.0)
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode
    for p in [*(tmp_path / "s" / "shards").iterdir(), *(tmp_path / "s" / "index").iterdir(), tmp_path / "s" / "store.json"]:
        assert p.stat().st_mode & 0o777 == mode, p


# ----------------------------------------------------------------------------- 5. stale store objects
def test_a_stale_store_object_cannot_write_duplicates_and_verify_flags_them(tmp_path):
    from lensaudit.cutouts.store import StoreCorruptError

    a = CutoutStore(tmp_path / "s", create=True)
    b = CutoutStore(tmp_path / "s")
    _ = b.index  # b caches the (empty) index
    with a.writer() as w:
        w.add("x", _cubes(1)[0], 1.0, 0.0)
    with pytest.raises(ValueError, match="already in store"):
        with b.writer() as w:
            w.add("x", _cubes(1, seed=1)[0], 1.0, 0.0)
    assert len(CutoutStore(tmp_path / "s")) == 1
    # a duplicate written behind the store's back is a verification failure, not a silent choice
    idx = sorted((tmp_path / "s" / "index").glob("*.parquet"))[0]
    sh = sorted((tmp_path / "s" / "shards").glob("*.h5"))[0]
    (tmp_path / "s" / "index" / "shard-000009-deadbeef.parquet").write_bytes(idx.read_bytes().replace(
        sh.stem.encode(), b"shard-000009-deadbeef"))
    (tmp_path / "s" / "shards" / "shard-000009-deadbeef.h5").write_bytes(sh.read_bytes())
    with pytest.raises(StoreCorruptError, match="duplicate id"):
        CutoutStore(tmp_path / "s").verify()


# ----------------------------------------------------------------------------- 6. SIGTERM
def test_sigterm_commits_buffered_cutouts_like_ctrl_c(tmp_path, render):
    n = 80
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"id": [f"o{i:03d}" for i in range(n)], "ra": 150 + np.arange(n) * 0.01, "dec": 1.5}).to_csv(
        manifest, index=False)
    root = tmp_path / "s"
    with serve_in_thread(render, fault=lambda i, q: Fault(delay_s=0.05)) as srv:
        cmd = [sys.executable, "-m", "lensaudit.cli", "-q", "cutouts", "fetch", "--manifest", str(manifest),
               "--service", srv.url, "--store", str(root), "--rate", "1000", "--concurrency", "2",
               "--commit-every", "1000"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while srv.n_requests < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "terminated" in err
    store = CutoutStore(root)
    assert 15 <= len(store) < n and store.verify()["ok"]  # everything fetched before the signal was committed


# ----------------------------------------------------------------------------- 7. clear errors
def test_truncated_sweep_is_a_clear_error(tmp_path, capsys):
    from lensaudit.survey.columns import SchemaError
    from lensaudit.survey.sweepio import read_sweep, synthetic_sweep_rows, write_sweep_fits

    box = (150.0, 155.0, 0.0, 5.0)
    p = write_sweep_fits(synthetic_sweep_rows(500, box), tmp_path / "sweep-150p000-155p005.fits", box)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match="sweep-150p000-155p005.fits.*truncated"):
        read_sweep(p)
    rc = main(["catalog", "ingest", "--sweeps", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "truncated" in capsys.readouterr().err


def test_evaluate_with_positives_only_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    m = pd.DataFrame({"id": [f"p{i}" for i in range(20)], "label": 1, "split": "val", "tier": "A"})
    p = pd.DataFrame({"id": m["id"], "probability": np.linspace(0.1, 0.9, 20)})
    m.to_parquet(tmp_path / "m.parquet")
    p.to_parquet(tmp_path / "p.parquet")
    rc = main(["evaluate", "--preds", str(tmp_path / "p.parquet"), "--manifest", str(tmp_path / "m.parquet"),
               "--out", str(tmp_path / "ev")])
    assert rc == 2 and "has no negatives" in capsys.readouterr().err
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_keeps_the_old_file(tmp_path):
    """RLIMIT_FSIZE makes every write past 1 MB fail, as a full disk does."""
    code = f"""
import resource, signal, sys, torch
from lensaudit.train.checkpoint import save_checkpoint
save_checkpoint({str(tmp_path / 'ck.pt')!r}, arch='x', model={{'w': torch.zeros(10)}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    save_checkpoint({str(tmp_path / 'ck.pt')!r}, arch='x', model={{'w': torch.zeros(4 << 20)}})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("CheckpointError"), out.stdout + out.stderr
    assert "could not be written" in out.stdout and "Traceback" not in out.stderr
    import torch

    ck = torch.load(tmp_path / "ck.pt", weights_only=True)  # the previous checkpoint is intact
    assert ck["model"]["w"].shape == (10,)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ck.pt")]  # no temp file left behind


# ----------------------------------------------------------------------------- 8. metrics.jsonl vs last.pt
def test_metrics_log_agrees_with_last_checkpoint_after_resume(tiny, tmp_path):
    from lensaudit.train import train

    train(_train_cfg(tiny, tmp_path / "r", epochs=2))
    log = tmp_path / "r" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    # a kill between an epoch's log line and its checkpoint leaves a line last.pt does not know
    log.write_text("\n".join([*lines, lines[-1].replace('"epoch": 1', '"epoch": 2')]) + "\n")
    train(_train_cfg(tiny, tmp_path / "r", epochs=3), resume=True)
    epochs = [json.loads(x)["epoch"] for x in log.read_text().splitlines()]
    assert epochs == [0, 1, 2]


# ----------------------------------------------------------------------------- 9. small holes
def test_labels_outside_zero_one_and_negative_sample_limits_are_rejected(tiny, tmp_path):
    from lensaudit.artifacts import ManifestError
    from lensaudit.config import ConfigError, validate_config
    from lensaudit.train import TrainConfig, train

    store, m, _ = tiny
    bad = m.copy()
    bad.loc[3, "label"] = 2
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match=r"label other than 0 or 1.*t003=2"):
        train(_train_cfg(tiny, tmp_path / "r", manifest=str(tmp_path / "bad.parquet")))
    with pytest.raises(ConfigError, match="max_train_samples"):
        validate_config({"manifest": "m", "store": "s", "max_train_samples": -5}, TrainConfig)


def test_score_refuses_duplicate_manifest_ids(tiny, tmp_path):
    from lensaudit.artifacts import ManifestError
    from lensaudit.train import score_manifest, train

    store, m, _ = tiny
    train(_train_cfg(tiny, tmp_path / "r"))
    dup = pd.concat([m, m.iloc[:2]], ignore_index=True)
    with pytest.raises(ManifestError, match="duplicate id"):
        score_manifest(tmp_path / "r" / "last.pt", dup, store, device="cpu")


def test_export_file_names_never_collide(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True)
    with store.writer() as w:
        for i, cid in enumerate(["a/b", "a_b", "a:b", "../x"]):
            w.add(cid, _cubes(1, seed=i)[0], 1.0 + i * 0.01, 0.0)
    written = export_cutouts(CutoutStore(tmp_path / "s"), ["a/b", "a_b", "a:b", "../x"], tmp_path / "o", "fits")
    assert len({p.name for p in written}) == 4
    assert all(p.parent == tmp_path / "o" for p in written)
    assert (tmp_path / "o" / "a_b.fits").exists()  # an id that is already a safe name keeps it


def test_oversized_response_bodies_are_refused_early(tmp_path, render):
    big = b"SIMPLE  =                    T" + b" " * (40 << 20)
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render, fault=lambda i, q: Fault(body=big)) as srv:
        rep = fetch_manifest(pd.DataFrame({"id": ["a"], "ra": [20.0], "dec": [1.0]}), store,
                             FetchConfig(service_url=srv.url, **{**FAST, "max_retries": 0}))
    assert rep.n_failed == 1 and list(rep.failure_reasons) == ["too_large"]
    assert "too_large" in CutoutStore(tmp_path / "s").failures()["reason"].iloc[0]


# ----------------------------------------------------------------------------- 10. sweeps without EXTNAME
def test_sweep_without_extname_card_is_read_with_a_warning(tmp_path, caplog):
    from astropy.io import fits

    from lensaudit.survey.columns import SchemaError
    from lensaudit.survey.sweepio import read_sweep, synthetic_sweep_rows, write_sweep_fits

    box = (150.0, 155.0, 0.0, 5.0)
    p = write_sweep_fits(synthetic_sweep_rows(30, box), tmp_path / "sweep-150p000-155p005.fits", box)
    with fits.open(p, mode="update") as h:
        del h[1].header["EXTNAME"]
    with caplog.at_level("WARNING"):
        df = read_sweep(p)
    assert len(df) == 30 and "EXTNAME" in caplog.text
    # an older-release schema (no DR10 column such as MASKBITS' partner NOBS_Z) keeps its clear error
    with fits.open(p) as h:
        t = h[1].data
        cols = [c for c in h[1].columns if c.name != "NOBS_Z"]
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
            tmp_path / "sweep-150p005-155p010.fits")
        del t
    with pytest.raises(SchemaError, match="missing required column.*NOBS_Z"):
        read_sweep(tmp_path / "sweep-150p005-155p010.fits")


def test_help_documents_exit_codes_and_fetch_documents_moved(capsys):
    with pytest.raises(SystemExit):
        main(["cutouts", "fetch", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--moved {error,refetch,keep}" in out

