"""The audit report: sections, missing stages, self-containment, tables, and a real headless browser."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from browser import check_in_browser, chromium
from lensaudit.report import build_report
from lensaudit.report.tables import tex_escape, to_latex, write_tables

SECTIONS = ["data", "sources", "training", "performance", "selection", "realism", "closure", "ensemble", "methods"]


def _partial_run(tmp_path):
    """A run directory with the catalog and training stages only."""
    run = tmp_path / "run"
    (run / "catalog").mkdir(parents=True)
    (run / "train").mkdir()
    cut = {"order": ["rows_in", "mag_z", "type", "rows_eligible"],
           "total": {"rows_in": 1000, "mag_z": 600, "type": 100, "rows_eligible": 300}}
    (run / "catalog" / "cutflow.json").write_text(json.dumps(cut))
    rng = np.random.default_rng(0)
    n = 300
    m = pd.DataFrame({"id": [f"o{i}" for i in range(n)], "ra": rng.uniform(150, 151, n), "dec": rng.uniform(1, 2, n),
                      "split": rng.choice(["train", "val", "test"], n), "label": (np.arange(n) % 10 == 0).astype(int),
                      "type": rng.choice(["DEV", "SER"], n)})
    m["tier"] = np.where(m["label"] == 1, "A", np.where(np.arange(n) % 2, "N1", "N2"))
    m.to_parquet(run / "catalog" / "manifest_70_15_15.parquet")
    with open(run / "train" / "metrics.jsonl", "w") as f:
        for e in range(4):
            f.write(json.dumps({"epoch": e, "train_loss": 0.5 - 0.1 * e, "val_loss": 0.45 - 0.08 * e,
                                "val_auc": 0.7 + 0.05 * e, "train_samples_per_s": 100.0}) + "\n")
    return run


def test_a_partial_run_shows_each_missing_stage_and_how_to_produce_it(tmp_path):
    run = _partial_run(tmp_path)
    path = build_report(run)
    text = path.read_text()
    for sec in SECTIONS:
        assert f'data-section="{sec}"' in text
    # the stages that exist have content; the others say what is missing and which command makes it
    assert "Cut flow" in text and "Training curves" in text
    assert "lensaudit evaluate" in text and "lensaudit selection run" in text and "lensaudit realism" in text
    assert "lensaudit cutouts fetch" in text                     # galleries need the cutout store
    assert "lensaudit ensemble run" in text
    assert (run / "report" / "figures" / "split_map.png").stat().st_size > 1000
    cf = pd.read_csv(run / "report" / "tables" / "cutflow.csv")
    assert list(cf["rows left"]) == [1000, 400, 300, 300]


def test_commit_and_versions_before_the_demo_writes_its_run_record(tmp_path):
    """The demo's report stage runs before the demo's run_info.json exists: the header names the commit of the
    code writing the report, the methods box the training run's commit and versions, never '?' or None."""
    from lensaudit.utils.provenance import git_commit

    run = _partial_run(tmp_path)
    (run / "train" / "run_info.json").write_text(json.dumps(
        {"utc_time": "2026-12-02T00:00:00Z", "git_commit": "abc123trained", "platform": "x",
         "seeds": {"train": 3}, "versions": {"torch": "9.9"}}))
    text = build_report(run).read_text()
    assert f"commit <code>{git_commit()} (of the code writing this report)</code>" in text
    assert "abc123trained" in text and "torch 9.9" in text and "commit <code>?</code>" not in text
    (run / "run_info.json").write_text(json.dumps({"git_commit": "deadbeefdemo", "versions": {"numpy": "1.0"}}))
    text = build_report(run).read_text()
    assert "commit <code>deadbeefdemo</code>" in text and "numpy 1.0" in text


def test_report_is_self_contained(tmp_path):
    text = build_report(_partial_run(tmp_path)).read_text()
    # no external scripts, style sheets, fonts or images: every src is a data URI
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'<img src="([^"]+)"', text))
    assert "<link" not in text and "@import" not in text and "<script" not in text


def test_an_empty_or_absent_run_directory():
    from lensaudit.errors import InputError
    with pytest.raises(InputError, match="not found"):
        build_report("/nonexistent/run")


def test_latex_tables_escape_and_format(tmp_path):
    df = pd.DataFrame({"family": ["sersic_2", "100%"], "AUC": [0.8567, np.nan], "n": [10, 20]})
    tex = to_latex(df, digits=2)
    assert r"sersic\_2" in tex and r"100\%" in tex and "0.86" in tex and "--" in tex
    assert tex.startswith(r"\begin{tabular}{lrr}") and r"\bottomrule" in tex
    assert tex_escape("a<b") == "a$<$b"
    names = write_tables({"t": df}, tmp_path)
    assert names == ["t.csv", "t.tex"] and pd.read_csv(tmp_path / "t.csv").shape == (2, 3)


def test_the_report_in_a_real_browser(tmp_path):
    if chromium() is None:
        pytest.skip("NO BROWSER: Debian's chromium is not installed, so the report was not rendered "
                    "(`apt-get install chromium`; .ci/run installs it)")
    path = build_report(_partial_run(tmp_path))
    res = check_in_browser(path, tmp_path / "report.png")
    assert res["errors"] == [] and res["broken"] == 0 and res["images"] >= 2
    assert res["sections"] == SECTIONS
    assert set(res["missing"]) >= {"performance", "selection", "realism", "closure", "ensemble"}
    assert (tmp_path / "report.png").stat().st_size > 10000
