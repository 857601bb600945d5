"""Command line: help texts, exit codes, clear errors on bad input, the demo's stage skipping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensaudit.cli import main
from lensaudit.cutouts import CutoutStore


@pytest.mark.parametrize("args, must", [
    (["--help"], ["demo", "cutouts", "mock", "catalog", "train", "score", "evaluate", "exit codes"]),
    (["cutouts", "--help"], ["fetch", "import", "export", "verify"]),
    (["cutouts", "fetch", "--help"], ["--manifest", "--service", "--store", "--rate", "--concurrency", "--moved"]),
    (["cutouts", "export", "--help"], ["--ids", "--format", "{fits,npz}", "--out"]),
    (["demo", "--help"], ["--quick", "--force", "--shared-data", "--config"]),
    (["mock", "--help"], ["build", "serve", "check"]),
    (["catalog", "build", "--help"], ["--config", "--engine", "{local,spark}"]),
    (["train", "--help"], ["--resume", "--force", "--epochs"]),
    (["--help"], ["selection", "realism", "inject"]),
    (["selection", "--help"], ["run", "closure", "mock-true-lenses"]),
    (["selection", "closure", "--help"], ["--run", "--true-lenses", "--realism", "--out"]),
    (["realism", "--help"], ["--config", "GO / NO-GO"]),
    (["inject", "--help"], ["--family", "--n", "--out"]),
    (["score", "--help"], ["--engine", "{local,spark}", "--partition-rows", "--arrow-batch", "--master"]),
])
def test_help_lists_the_commands_and_options_of_each_level(args, must, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lensaudit")
    missing = [m for m in must if m not in out]
    assert not missing, missing


def test_fetch_rejects_bad_manifest_with_named_rows(tmp_path, capsys):
    m = tmp_path / "m.csv"
    pd.DataFrame({"id": ["a", "b", "b"], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 95.0, 0.0]}).to_csv(m, index=False)
    rc = main(["cutouts", "fetch", "--manifest", str(m), "--service", "http://127.0.0.1:9/x", "--store",
               str(tmp_path / "s")])
    assert rc == 2
    assert "out-of-range ra/dec, ids ['b']" in capsys.readouterr().err
    pd.DataFrame({"id": ["a"], "ra": [1.0]}).to_csv(m, index=False)
    assert main(["cutouts", "fetch", "--manifest", str(m), "--store", str(tmp_path / "s")]) == 2
    assert "missing required column(s) ['dec']" in capsys.readouterr().err


def test_fetch_config_rejects_unknown_keys(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("concurrency: 2\nconcurency: 3\n")
    m = tmp_path / "m.csv"
    pd.DataFrame({"id": ["a"], "ra": [1.0], "dec": [0.0]}).to_csv(m, index=False)
    assert main(["cutouts", "fetch", "--manifest", str(m), "--store", str(tmp_path / "s"), "--config", str(cfg)]) == 2
    assert "concurency: Extra inputs are not permitted" in capsys.readouterr().err


def test_fetch_import_export_verify_via_cli(tmp_path, render, capsys, sample_npz):
    from lensaudit.mock.server import serve_in_thread

    m = tmp_path / "m.parquet"
    pd.DataFrame({"id": ["x1", "x2"], "ra": [20.0, 20.01], "dec": [1.0, 1.0]}).to_parquet(m)
    with serve_in_thread(render) as srv:
        rc = main(["cutouts", "fetch", "--manifest", str(m), "--service", srv.url, "--store", str(tmp_path / "s"),
                   "--rate", "100"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_stored"] == 2
    assert main(["cutouts", "import", "--store", str(tmp_path / "s"), str(sample_npz[0].parent)]) == 0
    capsys.readouterr()
    assert len(CutoutStore(tmp_path / "s")) == 6
    assert main(["cutouts", "export", "--store", str(tmp_path / "s"), "--ids", "x2", "--format", "npz",
                 "--out", str(tmp_path / "o")]) == 0
    from lensaudit.survey.npz_cutout import read_npz_cutout

    cube, meta = read_npz_cutout(tmp_path / "o" / "x2.npz")
    np.testing.assert_array_equal(cube, CutoutStore(tmp_path / "s").get(["x2"])[0])
    assert meta["galaxy_id"] == "x2" and meta["ra"] == pytest.approx(20.01)
    capsys.readouterr()
    assert main(["cutouts", "verify", "--store", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["cutouts", "export", "--store", str(tmp_path / "s"), "--ids", "zz", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_demo_quick_runs_every_stage_and_then_skips_them(tmp_path, reference, installed_wheel):
    """The quick demo from the installed wheel, in a folder with no reference-data override and no
    ``shared/data`` above it; then the checkout's own code finds every stage's inputs unchanged."""
    from conftest import run_installed
    from lensaudit.demo import run_demo
    from lensaudit.reference import ENV

    cwd = tmp_path / "user"
    cwd.mkdir()
    assert not any((p / "shared" / "data").exists() for p in cwd.parents), "a shared/data folder above the test"
    res = run_installed(installed_wheel, ["demo", "--quick", "--out", "demo"], cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    # where the reference data came from, first; the report and the main tables, last
    assert lines[0] == (f"reference data: package ({installed_wheel / 'lensaudit' / 'reference' / 'data'}), "
                        "7 files, checksums verified")
    assert next(ln for ln in lines if ln.startswith("report:")).split()[-1] == str(Path("demo") / "report" / "index.html")
    assert any(ln.startswith("closure:") and ln.endswith("closure_summary.csv") for ln in lines)
    info = json.loads((cwd / "demo" / "run_info.json").read_text())
    assert ENV not in info["command_line"] and info["reference_data"]["override"] is None
    assert all(f["path"].startswith(str(installed_wheel)) for f in info["reference_data"]["files"].values())
    s = info["stages"]
    (tmp_path / "demo").symlink_to(cwd / "demo")
    order = ["samples", "sources", "mock", "catalog", "fetch", "train", "score", "evaluate", "shortcuts", "selection", "check",
             "report"]
    assert sorted(s) == sorted(order)
    # the selection stage: four families on the reduced grid, and the closure test of each with its interval
    assert set(s["selection"]["completeness_p05"]) == {"sersic", "clumpy", "stamps", "planted"}
    assert all(0 <= c <= 1 for c in s["selection"]["completeness_p05"].values())
    assert set(s["selection"]["closure"]) == {"sersic", "clumpy", "stamps", "planted"}
    assert all(c["lo95"] <= c["diff"] <= c["hi95"] for c in s["selection"]["closure"].values())
    # and where its time went: the selection run (each family's share of it), the realism gate, the closure
    sec = s["selection"]["seconds"]
    assert set(sec) == {"selection_run", "realism_gate", "closure", "family_sersic", "family_clumpy", "family_stamps",
                        "family_planted"} and all(v >= 0 for v in sec.values())
    assert sum(v for k, v in sec.items() if k.startswith("family_")) <= sec["selection_run"] + 0.5
    # the shortcut gates with and without host-matched negatives, on the validation split of each
    assert set(s["shortcuts"]["gates"]) == {"published", "host_matched"}
    assert s["shortcuts"]["host_matched_verified"] == {"70_30": True, "70_15_15": True}
    assert not any(v["skipped"] for v in s.values())
    assert s["catalog"]["verified"] == {"70_30": True, "70_15_15": True}
    assert s["fetch"]["n_failed"] == 0 and 50 < s["fetch"]["n_stored"] == s["fetch"]["n_requested"] <= 200
    assert s["check"]["passed"]
    # the best validation AUC of training is the AUC of the scored validation split with best.pt,
    # and the evaluation's AUC of the same rows
    from sklearn.metrics import roc_auc_score

    from lensaudit.evaluate import load_result

    d = tmp_path / "demo"
    preds = pd.read_parquet(d / "score" / "predictions.parquet")
    m = pd.read_parquet(d / "catalog" / "manifest_70_15_15.parquet")
    val = m[m.split == "val"].merge(preds, on="id")
    assert s["score"]["n_scored"] == len(preds) > 0 and s["evaluate"]["n_pos"] == int(val.label.sum()) > 0
    assert s["train"]["best_val_auc"] == pytest.approx(roc_auc_score(val.label, val.logit), abs=1e-6)
    auc = load_result(d / "evaluate" / "metrics.json").overall.roc_auc
    assert (auc.n_pos, auc.n_neg) == (int(val.label.sum()), int((val.label == 0).sum()))
    if auc.n_pos >= 10:
        assert auc.value == pytest.approx(roc_auc_score(val.label, val.logit), abs=1e-12)
    else:   # the quick demo's few validation lenses: an interval would be meaningless, so none is given
        assert auc.value is None and auc.status == "insufficient"
    # issue 30: the demo's trained model through four routes (the checkpoint, its ONNX and TorchScript exports, the
    # offline exchange scored by a stand-in 'user pipeline' from the npz shards) gives one selection function
    _four_routes_one_selection_function(d, tmp_path / "routes")
    # the report: every section present, rendered in a real browser without errors or broken images
    report = d / "report" / "index.html"
    assert s["report"]["report"] == str(Path("demo") / "report" / "index.html") and report.stat().st_size > 100_000
    from browser import check_in_browser, chromium
    if chromium() is not None:
        res = check_in_browser(report, tmp_path / "demo_report.png")
        assert res["errors"] == [] and res["broken"] == 0 and res["images"] >= 10
        assert res["sections"] == ["data", "sources", "training", "performance", "selection", "realism", "closure", "ensemble",
                                   "methods"]
        assert not {"data", "sources", "training", "performance", "selection", "closure"} & set(res["missing"])
        assert "ensemble" in res["missing"]  # `lensaudit ensemble run` is a separate command after the demo
    again = run_demo(tmp_path / "demo", quick=True, reference=reference)
    assert list(again) == order and all(v["skipped"] for v in again.values())


def _four_routes_one_selection_function(d: Path, tmp: Path) -> None:
    import yaml

    from lensaudit.artifacts import Run
    from lensaudit.cli import main
    from lensaudit.config import load_config
    from lensaudit.inject.records import read_injections
    from lensaudit.selection import SelectionConfig
    from lensaudit.selection.function import SelectionFunction
    from test_scoring import _user_pipeline

    r = Run(d)
    best = r.train.best
    assert main(["export-model", str(best), "--out", str(tmp / "exp"), "--check-store", str(r.store)]) == 0
    rep = json.loads((tmp / "exp" / "model.export.json").read_text())
    assert rep["n_checked"] > 4 and all(f["max_abs_probability_difference"] < 1e-5 for f in rep["files"].values())
    base = load_config(r.selection.config, SelectionConfig).model_dump(mode="json")
    base.update(families=[f for f in base["families"] if f["name"] == "sersic"], negatives_predictions=None,
                device="cpu", **{k: str(d.parent / base[k]) for k in ("manifest", "store")})  # the demo's own are relative
    tabs, recs = {}, {}
    for name, model in (("ck", best), ("onnx", tmp / "exp" / "model.onnx"), ("ts", tmp / "exp" / "model.ts")):
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump({**base, "checkpoint": str(model), "out": str(tmp / name)}))
        assert main(["selection", "run", "--config", str(tmp / f"{name}.yaml")]) == 0
    (tmp / "x.yaml").write_text(yaml.safe_dump({**base, "checkpoint": None, "out": str(tmp / "x")}))
    assert main(["selection", "export", "--config", str(tmp / "x.yaml")]) == 0
    run_id = json.loads((tmp / "x" / "exchange" / "exchange.json").read_text())["run_id"]
    _user_pipeline(tmp / "x" / "exchange", run_id, tmp / "exp" / "model.onnx").to_csv(tmp / "scores.csv", index=False)
    assert main(["selection", "import-scores", str(tmp / "scores.csv"), "--config", str(tmp / "x.yaml")]) == 0
    for name in ("ck", "onnx", "ts", "x"):
        tabs[name] = SelectionFunction.load(tmp / name / "selection_sersic.parquet").table
        recs[name] = read_injections(tmp / name, "sersic")
    p = recs["ck"]["probability"].to_numpy()
    assert len(p) > 100 and 0 < (p >= 0.5).mean() < 1                    # a trained model: detections and misses
    for name in ("onnx", "ts", "x"):
        np.testing.assert_allclose(recs[name]["probability"], p, rtol=0, atol=1e-5)
        pd.testing.assert_frame_equal(tabs[name], tabs["ck"])


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    import lensaudit.cutouts.cli as ccli
    from lensaudit.errors import EXIT_USER_ERROR, InputError

    def user_error(a):
        raise InputError("manifest x.parquet: 2 duplicate id(s)")

    monkeypatch.setattr(ccli, "_cmd_verify", user_error)
    assert main(["cutouts", "verify", "--store", str(tmp_path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err == "lensaudit: error: manifest x.parquet: 2 duplicate id(s)\n"

    def bug(a):
        return {}["no such key"]  # a KeyError from a bug is not a user error

    monkeypatch.setattr(ccli, "_cmd_verify", bug)
    with pytest.raises(KeyError, match="no such key"):
        main(["cutouts", "verify", "--store", str(tmp_path)])


def test_missing_input_file_is_a_user_error(tmp_path, capsys):
    assert main(["cutouts", "fetch", "--manifest", str(tmp_path / "nope.parquet"), "--store", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip().endswith("nope.parquet: file not found")


def test_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 ok, 1 a verification or check failed, 2 user error" in out
    assert "3 partial success" in out


def test_building_the_command_line_imports_no_heavy_library():
    """``lensaudit --help`` (and any command's parsing) loads no torch, pandas, scipy or astropy: the packages load
    their submodules on first use (lensaudit.utils.lazy), so a light command does not wait seconds for them."""
    code = ("import sys; from lensaudit.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'pandas', 'scipy', 'astropy', 'sklearn', 'pyspark', "
            "'matplotlib', 'numba', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_packages_give_the_same_objects_as_their_submodules():
    import lensaudit.cutouts as cutouts
    import lensaudit.inject as inject
    from lensaudit.artifacts.manifest import read_manifest
    from lensaudit.sources.library import StampLibrary

    assert cutouts.read_manifest is read_manifest and inject.StampLibrary is StampLibrary
    assert "read_manifest" in dir(cutouts) and "InjectionEngine" in inject.__all__
    with pytest.raises(AttributeError):
        _ = inject.no_such_name


@pytest.mark.parametrize("package", ["artifacts", "catalog", "cutouts", "evaluate", "inject", "mock", "realism",
                                     "report", "scoring", "selection", "sources", "train", "validation"])
def test_every_name_a_lazy_package_lists_exists(package):
    import importlib

    mod = importlib.import_module(f"lensaudit.{package}")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing and len(mod.__all__) > 0
