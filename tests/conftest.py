"""Shared fixtures: the real DR10 reference data, a simple loopback field renderer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensaudit.mock.server import CutoutRequest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _packaged_reference_data():
    """Every test reads the reference data shipped in the package, whatever the caller's environment says;
    tests of the override set ``LENSAUDIT_SHARED_DATA`` themselves (monkeypatch)."""
    from lensaudit.reference import ENV

    saved = os.environ.pop(ENV, None)
    yield
    if saved is not None:
        os.environ[ENV] = saved


@pytest.fixture(scope="session")
def reference(_packaged_reference_data):
    """The packaged real DR10 reference data, verified (:func:`lensaudit.reference.load_reference`)."""
    from lensaudit.reference import load_reference

    return load_reference()


@pytest.fixture(scope="session")
def sample_npz(reference) -> list[Path]:
    return reference.sample_cutouts


@pytest.fixture(scope="session")
def mock_survey_dir(tmp_path_factory, reference) -> Path:
    """A 1 deg^2 mock survey (16 bricks, seed 7): enough bricks that every real sample cutout has
    depth-matched partners, and about 50 lenses."""
    from lensaudit.mock.config import MockConfig
    from lensaudit.mock.survey import build_survey

    d = tmp_path_factory.mktemp("mock") / "survey"
    build_survey(MockConfig(area_deg2=1.0, seed=7), d, reference)
    return d


def field_render(req: CutoutRequest):
    """Deterministic sky: a Gaussian blob at the centre plus noise seeded by the position."""
    seed = int(abs(req.ra * 1e6) + abs(req.dec * 1e6) * 7) % (2**32)
    rng = np.random.default_rng(seed)
    n = len(req.bands)
    y, x = np.mgrid[0 : req.height, 0 : req.width]
    blob = np.exp(-((x - (req.width - 1) / 2) ** 2 + (y - (req.height - 1) / 2) ** 2) / (2 * 3.0**2))
    cube = (0.05 * blob[None] + rng.normal(0, 0.003, (n, req.height, req.width))).astype(np.float32)
    return cube, None


@pytest.fixture
def render():
    return field_render


def assert_png(path: Path, min_px: tuple[int, int] = (200, 150)) -> np.ndarray:
    """A PNG that a person could look at: readable, at least ``min_px`` (width, height), not blank."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert w >= min_px[0] and h >= min_px[1], f"{path}: {w}x{h} pixels"
    assert img[..., :3].std() > 0.02, f"{path}: blank"
    return img


@pytest.fixture(scope="session")
def spark():
    """One quiet local Spark session for every Spark test (UI off, 2 shuffle partitions, loopback only).

    A machine without pyspark (or a JVM) fails these tests loudly; set LENSAUDIT_SKIP_SPARK=1 to
    skip them on purpose.
    """
    if os.environ.get("LENSAUDIT_SKIP_SPARK") == "1":
        pytest.skip("LENSAUDIT_SKIP_SPARK=1")
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the Spark tests need pyspark ({exc}); install lensaudit[spark] or set LENSAUDIT_SKIP_SPARK=1")

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from lensaudit.catalog.engines import spark_session

    s = spark_session("local[2]", app="lensaudit-tests")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(store, manifest, manifest path) of :func:`make_tiny_store`."""
    d = tmp_path_factory.mktemp("tiny")
    from lensaudit.data.synthetic import make_tiny_store

    store, m = make_tiny_store(d / "store")
    m.to_parquet(d / "manifest.parquet", index=False)
    return store, m, d / "manifest.parquet"


def build_wheel(tmp: Path) -> Path:
    """Build lensaudit's wheel from a copy of the sources (the checkout stays clean), without downloads."""
    src = tmp / "src_copy"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("lensaudit-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> Path:
    """lensaudit's wheel installed (without dependencies: those of this environment serve) into a folder of its
    own; put it first on PYTHONPATH to run that copy instead of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(tmp / "site"), str(wheel)], check=True, capture_output=True, text=True, timeout=600)
    return tmp / "site"


def run_installed(site: Path, args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m lensaudit ARGS`` from the installed wheel, in ``cwd``, with no reference-data override."""
    env = {k: v for k, v in os.environ.items() if k not in ("LENSAUDIT_SHARED_DATA", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "lensaudit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def host_manifest(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"g{i:03d}" for i in range(n)], "ra": rng.uniform(0, 1, n), "dec": rng.uniform(0, 1, n),
                         "split": np.array(["train", "val", "test"])[np.arange(n) % 3],
                         "label": (np.arange(n) % 10 == 0).astype(int), "tier": np.where(np.arange(n) % 10 == 0, "A", ""),
                         "psfsize_g": rng.uniform(1.0, 1.9, n), "psfsize_r": rng.uniform(0.95, 1.75, n),
                         "psfsize_z": rng.uniform(0.9, 1.6, n), "psfdepth_r": 25 * 10 ** (0.8 * (rng.uniform(23.2, 24.8, n) - 22.5)),
                         "flux_r": rng.uniform(5, 50, n)})


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """A store of 90 synthetic cutouts with a manifest (val/test hosts with PSF and depth) and an untrained compact
    ResNet checkpoint: what a selection run, the realism gate and the closure test need, in seconds."""
    import torch

    from lensaudit.cutouts import CutoutStore
    from lensaudit.data.preprocess import PreprocessConfig
    from lensaudit.models import build_model
    from lensaudit.train.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("sel")
    m = host_manifest(90)
    m.to_parquet(d / "manifest.parquet")
    store = CutoutStore(d / "store", create=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:101, 0:101]
    blob = np.exp(-((xx - 50) ** 2 + (yy - 50) ** 2) / (2 * 4.0**2))
    with store.writer() as w:
        for r in m.itertuples():
            cube = (0.3 * blob[None] * np.array([0.5, 1, 1.5])[:, None, None] + rng.normal(0, 0.004, (3, 101, 101)))
            if r.label == 1:   # a blue arc of 7 pixels radius over 120 degrees, for arc photometry
                rr, ang = np.hypot(xx - 50, yy - 50), np.arctan2(yy - 50, xx - 50)
                arc = np.exp(-((rr - 7) ** 2) / 2.0) * (np.abs(ang - rng.uniform(-2, 2)) < 1.0)
                cube = cube + 0.05 * arc[None] * np.array([1.0, 0.8, 0.6])[:, None, None]
            w.add(r.id, cube.astype(np.float32), r.ra, r.dec)
    torch.manual_seed(0)
    kw = {"stem": 8, "stages": [[16, 8, 1, 2], [32, 16, 1, 2]]}
    model = build_model("bottleneck_resnet", **kw)
    save_checkpoint(d / "ck.pt", arch="bottleneck_resnet", model_kwargs=kw,
                    preprocess=PreprocessConfig(crop=40, stretch="asinh").model_dump(), model=model.state_dict())
    return d


def pytest_collection_modifyitems(config, items):
    """Under mutmut (``make mutation``), run a mutant's covering tests fastest first, by the durations mutmut
    measured: a killed mutant then stops (``-x``) at its cheapest failing test. Outside mutmut: no change."""
    import json

    if not os.environ.get("MUTANT_UNDER_TEST", "").startswith("lensaudit."):
        return
    stats = Path("mutmut-stats.json")          # mutmut runs the tests inside its mutants/ folder
    if stats.is_file():
        dur = json.loads(stats.read_text()).get("duration_by_test", {})
        items.sort(key=lambda it: dur.get(it.nodeid, 0.0))


@pytest.fixture(scope="session")
def xdf(tmp_path_factory):
    """(folder, build report) of the XDF stamp library, built once per session (about half a minute)."""
    from lensaudit.sources.xdf import build_xdf_library

    d = tmp_path_factory.mktemp("xdf")
    return d, build_xdf_library(d)
