"""The real DR10 reference data shipped in the package: checksums, contents, overrides, bad input,
and the wheel that carries it (built here, installed into a folder of its own, run from elsewhere)."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import build_wheel, run_installed
from lensaudit.cli import main
from lensaudit.reference import (
    CANDIDATES,
    ENV,
    FILES_TABLE,
    REGION_CONDITIONS,
    ReferenceDataError,
    file_table,
    load_reference,
    package_dir,
    resolve_path,
)

ROOT = Path(__file__).resolve().parents[1]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_packaged_files_match_their_checksums_and_hold_the_real_data():
    rows = file_table()
    d = package_dir()
    # every file of the folder is in the table and every table row is a file (no stray or missing data)
    on_disk = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name not in (FILES_TABLE, "README.md")}
    assert on_disk == {r["path"] for r in rows}
    for r in rows:   # hashlib over the bytes, independently of lensaudit's own hashing helper
        data = (d / r["path"]).read_bytes()
        assert _sha(data) == r["sha256"] and len(data) == int(r["bytes"]), r["path"]
        assert r["source"] and r["licence"], r["path"]
    cands = pd.read_csv(d / CANDIDATES)
    assert len(cands) == 5104 and cands["grading"].value_counts().to_dict() == {"probable": 4669, "confident": 435}
    assert len(pd.read_csv(d / REGION_CONDITIONS)) == 2689
    ref = load_reference()
    assert len(ref.sample_cutouts) == 4 and all(f.origin == "package" for f in ref.files.values())
    for p in ref.sample_cutouts:
        with np.load(p, allow_pickle=False) as z:
            assert z["cutout"].shape == (101, 101, 3) and z["cutout"].dtype == np.float32
    assert ref.provenance()["files"][CANDIDATES]["sha256"] == _sha((d / CANDIDATES).read_bytes())


def _package_copy(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the packaged folder that :func:`package_dir` returns from now on."""
    import lensaudit.reference as reference

    copy = tmp_path / "pkgdata"
    shutil.copytree(package_dir(), copy)
    monkeypatch.setattr(reference, "package_dir", lambda: copy)
    return copy


def test_an_altered_packaged_file_is_refused_naming_it(tmp_path, monkeypatch):
    copy = _package_copy(tmp_path, monkeypatch)
    load_reference()   # the untouched copy passes
    p = copy / "dr10_brick_conditions.csv"
    p.write_bytes(p.read_bytes().replace(b"0.07", b"0.08", 1))
    with pytest.raises(ReferenceDataError, match=r"dr10_brick_conditions\.csv: SHA-256 .* differs from files\.csv"):
        load_reference()
    (copy / "dr10_sample_cutouts" / "sample_cutout.npz").unlink()
    with pytest.raises(ReferenceDataError, match=r"sample_cutout\.npz: missing from the installed package"):
        load_reference()


def test_an_override_replaces_files_by_name_and_is_recorded(tmp_path, monkeypatch):
    over = tmp_path / "newer"
    over.mkdir()
    cands = pd.read_csv(package_dir() / CANDIDATES).head(100)
    cands.to_csv(over / CANDIDATES, index=False)
    ref = load_reference(over)
    assert ref.path(CANDIDATES) == over / CANDIDATES and ref.files[CANDIDATES].origin == "override"
    assert ref.files[REGION_CONDITIONS].origin == "package" and len(ref.sample_cutouts) == 4
    assert "1 of 7 files from" in ref.describe() and CANDIDATES in ref.describe()
    assert ref.provenance()["files"][CANDIDATES]["sha256"] == _sha((over / CANDIDATES).read_bytes())
    # the environment variable does the same; `reference:` paths in configs follow it
    monkeypatch.setenv(ENV, str(over))
    assert resolve_path(f"reference:{CANDIDATES}") == str(over / CANDIDATES)
    assert resolve_path("elsewhere/c.csv") == "elsewhere/c.csv"
    monkeypatch.delenv(ENV)
    assert resolve_path(f"reference:{CANDIDATES}") == str(package_dir() / CANDIDATES)
    # sample cutouts are replaced as a set
    (over / "dr10_sample_cutouts").mkdir()
    shutil.copy(ref.sample_cutouts[0], over / "dr10_sample_cutouts" / "mine.npz")
    assert [p.name for p in load_reference(over).sample_cutouts] == ["mine.npz"]


def test_bad_overrides_are_clear_errors_naming_the_file(tmp_path, monkeypatch, capsys):
    with pytest.raises(ReferenceDataError, match=r"override .*nowhere \(from --reference-data\): no such folder"):
        load_reference(tmp_path / "nowhere")
    monkeypatch.setenv(ENV, str(tmp_path / "gone"))
    with pytest.raises(ReferenceDataError, match=r"gone \(from \$LENSAUDIT_SHARED_DATA\): no such folder"):
        load_reference()
    monkeypatch.delenv(ENV)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceDataError, match="holds none of the reference files"):
        load_reference(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.read_csv(package_dir() / REGION_CONDITIONS).drop(columns=["median_psf_r_arcsec", "median_ebv"]).to_csv(
        bad / REGION_CONDITIONS, index=False)
    with pytest.raises(ReferenceDataError, match=r"dr10_region_conditions\.csv: missing column\(s\) "
                                                 r"median_psf_r_arcsec, median_ebv"):
        load_reference(bad)
    (bad / REGION_CONDITIONS).write_text(",".join(pd.read_csv(package_dir() / REGION_CONDITIONS).columns) + "\n")
    with pytest.raises(ReferenceDataError, match="no data rows"):
        load_reference(bad)
    # a folder with its own files.csv: checksums checked against it
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(package_dir() / CANDIDATES, own / CANDIDATES)
    (own / FILES_TABLE).write_text(f"path,sha256\n{CANDIDATES},{'0' * 64}\n")
    with pytest.raises(ReferenceDataError, match=r"desi_lens_candidates\.csv: SHA-256 .* differs from .*own/files\.csv"):
        load_reference(own)
    (own / FILES_TABLE).write_text(f"path,sha256\n{CANDIDATES},{_sha((own / CANDIDATES).read_bytes())}\n")
    assert load_reference(own).files[CANDIDATES].origin == "override"
    # a sample cutout of the wrong shape
    (own / "dr10_sample_cutouts").mkdir()
    np.savez(own / "dr10_sample_cutouts" / "x.npz", cutout=np.zeros((64, 64, 3), np.float32), meta_nobs_z=3)
    with pytest.raises(ReferenceDataError, match=r"x\.npz: 'cutout' has shape \(64, 64, 3\)"):
        load_reference(own)
    # on the command line: one line, exit 2, before anything runs
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "d"), "--reference-data", str(bad)]) == 2
    assert "no data rows" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main(["mock", "build", "--out", str(tmp_path / "m"), "--reference-data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and not (tmp_path / "m").exists()


def test_reference_commands(capsys, tmp_path):
    import json

    assert main(["reference", "verify"]) == 0
    assert capsys.readouterr().out.startswith(f"reference data: package ({package_dir()}), 7 files")
    assert main(["reference", "path", "dr10_sample_cutouts"]) == 0
    assert capsys.readouterr().out.strip() == str(package_dir() / "dr10_sample_cutouts")
    assert main(["reference", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["files"][CANDIDATES]["licence"].startswith("MIT") and shown["override"] is None
    assert main(["reference", "path", "nothing.csv"]) == 2


def test_paper4_config_names_the_packaged_candidates():
    from lensaudit.catalog import CatalogConfig
    from lensaudit.config import load_config
    from lensaudit.configs import bundled_config

    cfg = load_config(bundled_config("catalog/paper4_parity.yaml"), CatalogConfig)
    assert cfg.candidates == f"reference:{CANDIDATES}"
    assert resolve_path(cfg.candidates) == str(package_dir() / CANDIDATES)


# --------------------------------------------------------------------------- the wheel
def test_the_wheel_carries_the_data_with_its_checksums_and_the_configs(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        table = list(csv.DictReader(io.StringIO(z.read("lensaudit/reference/data/files.csv").decode())))
        assert {r["path"] for r in table} == {r["path"] for r in file_table()}
        for r in table:
            assert _sha(z.read(f"lensaudit/reference/data/{r['path']}")) == r["sha256"], r["path"]
        assert "lensaudit/reference/data/README.md" in names
    bundled = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "lensaudit" / "configs").rglob("*.yaml")}
    assert bundled and bundled <= names
    assert "lensaudit/__main__.py" in names and not any("shared" in n for n in names)


def test_the_installed_wheel_runs_from_an_unrelated_folder(installed_wheel, tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    res = run_installed(installed_wheel, ["reference", "verify"], cwd)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"reference data: package ({installed_wheel / 'lensaudit' / 'reference' / 'data'})")
    res = run_installed(installed_wheel, ["mock", "build", "--out", "m", "--area-deg2", "0.25", "--seed", "3"], cwd)
    assert res.returncode == 0, res.stderr
    assert (cwd / "m" / "survey.json").is_file()
    import json

    info = json.loads((cwd / "m" / "survey.json").read_text())["run_info"]
    assert info["git_commit"] == "unknown"   # an installed wheel claims no commit
    assert {f["origin"] for f in info["reference_data"]["files"].values()} == {"package"}
