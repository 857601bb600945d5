"""Selection function: Jeffreys intervals, the grid, hosts, the SelectionFunction file, an end-to-end run
with a small model, the realism probe and the closure test on synthetic truths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.stats import binom_conf_interval

from lensaudit.artifacts import OperatingPoint
from lensaudit.errors import InputError
from lensaudit.selection import AxisSpec, Grid, GridConfig, SelectionConfig, SelectionFunction, jeffreys_interval
from lensaudit.selection.closure import closure_test, merge_bins
from lensaudit.selection.hosts import host_cells, pick_hosts, select_hosts
from lensaudit.selection.intervals import completeness_columns
from lensaudit.selection.run import operating_points


# ---------------------------------------------------------------- intervals
@pytest.mark.parametrize("level", [0.68, 0.95])
def test_jeffreys_interval_equals_astropy_and_keeps_the_edge_conventions(level):
    k = np.array([0, 1, 3, 10, 19, 20, 0, 50, 100])
    n = np.array([20, 20, 20, 20, 20, 20, 3, 100, 100])
    lo, hi = jeffreys_interval(k, n, level)
    ref = binom_conf_interval(k, n, confidence_level=level, interval="jeffreys")
    np.testing.assert_allclose(lo, ref[0], atol=1e-10)
    np.testing.assert_allclose(hi, ref[1], atol=1e-10)
    assert lo[0] == 0.0 and hi[5] == 1.0 and hi[-1] == 1.0
    # a value worked out by hand: k = 0, n = 20: upper = Beta(0.5, 20.5).ppf(0.975 or 0.84)
    from scipy.stats import beta
    assert hi[0] == pytest.approx(beta.ppf(1 - (1 - level) / 2, 0.5, 20.5), rel=1e-12)


def test_jeffreys_interval_covers_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    for p, n in ((0.05, 40), (0.5, 20), (0.9, 60)):
        k = rng.binomial(n, p, 20000)
        lo, hi = jeffreys_interval(k, np.full_like(k, n), 0.95)
        cover = ((lo <= p) & (p <= hi)).mean()
        assert 0.92 < cover < 0.99, (p, n, cover)   # discrete binomial: coverage oscillates about 0.95
    with pytest.raises(ValueError):
        jeffreys_interval(5, 3)
    assert np.isnan(jeffreys_interval(0, 0)[0])


def test_completeness_columns_mark_insufficient_and_empty_cells():
    c = completeness_columns([3, 1, 0], [20, 4, 0], min_count=10)
    assert list(c["status"]) == ["ok", "insufficient", "empty"]
    assert c["completeness"][0] == pytest.approx(0.15) and np.isnan(c["completeness"][1:]).all()
    assert c["lo95"][0] < c["lo68"][0] < 0.15 < c["hi68"][0] < c["hi95"][0]
    # a cell with exactly min_count injections is measured; min_count below 1 still needs one injection
    assert list(completeness_columns([5, 5], [10, 9], min_count=10)["status"]) == ["ok", "insufficient"]
    import warnings

    for m in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")           # an empty cell is not divided by (no 0/0 warning)
            one = completeness_columns([1, 0], [1, 0], min_count=m)
        assert list(one["status"]) == ["ok", "empty"] and one["completeness"][0] == 1.0
        assert one["hi95"][0] == 1.0 and np.isnan(one["lo68"][1])


# ---------------------------------------------------------------- grid
def test_grid_axes_bins_and_bad_axes():
    g = Grid(GridConfig())
    assert g.shape == (10, 6, 4, 6)
    np.testing.assert_allclose(g.edges["theta_e"][[0, -1]], [0.5, 3.0])
    np.testing.assert_allclose(g.edges["psf_fwhm"], [0.9, 1.05, 1.2, 1.35, 1.5, 1.65, 1.8])
    assert list(g.bin_of("theta_e", [0.5, 0.74, 0.75, 3.0, 3.01, 0.2, np.nan])) == [0, 0, 1, 9, -1, -1, -1]
    with pytest.raises(ValueError, match="empty"):
        AxisSpec(start=1.0, stop=1.0, step=0.5)
    with pytest.raises(ValueError, match="increasing"):
        AxisSpec(edges=(1.0, 0.5))
    with pytest.raises(ValueError, match="> 0"):
        GridConfig(theta_e=AxisSpec(edges=(0.0, 1.0)))


# ---------------------------------------------------------------- SelectionFunction
def _linear_sf(tmp_path, min_count=1):
    from lensaudit.selection.function import completeness_table

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0, 3.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.3, 1.8)),
                           depth=AxisSpec(edges=(23.0, 24.0)), arc_mag=AxisSpec(edges=(19.0, 21.0, 23.0))))
    # completeness exactly linear in the cell centres: f = 0.2 theta_e - 0.1 psf + 0.05 (23 - mag) + 0.3
    idx = np.array(list(np.ndindex(grid.shape)))
    cen = {a: grid.centres(a) for a in grid.edges}
    f = 0.2 * cen["theta_e"][idx[:, 0]] - 0.1 * cen["psf_fwhm"][idx[:, 1]] + 0.05 * (23 - cen["arc_mag"][idx[:, 3]]) + 0.3
    n = 1000
    recs = []
    for cell, fi in enumerate(f):
        k = int(round(fi * n))
        recs.append(pd.DataFrame({"cell": cell, "probability": np.r_[np.full(k, 0.9), np.full(n - k, 0.1)]}))
    recs = pd.concat(recs, ignore_index=True)
    ops = [OperatingPoint.fixed(0.5)]
    tab = completeness_table(recs, grid, ops, min_count)
    meta = {"edges": {a: e.tolist() for a, e in grid.edges.items()}, "thresholds": [op.to_dict() for op in ops],
            "min_count": min_count}
    sf = SelectionFunction(tab, meta)
    path = sf.save(tmp_path / "sf.parquet")
    return SelectionFunction.load(path), f.reshape(grid.shape), cen


def test_selection_function_interpolates_between_centres_and_refuses_to_extrapolate(tmp_path):
    sf, f, cen = _linear_sf(tmp_path)
    exact = lambda te, psf, mag: 0.2 * te - 0.1 * psf + 0.05 * (23 - mag) + 0.3  # noqa: E731
    pts = (np.array([0.9, 1.9, 2.2]), np.array([1.2, 1.3, 1.5]), 23.5, np.array([20.5, 21.0, 21.9]))
    got = sf.completeness(*pts, threshold="p>=0.5")
    np.testing.assert_allclose(got["completeness"], exact(pts[0], pts[1], pts[3]), atol=1e-3)
    assert (got["lo68"] < got["completeness"]).all() and (got["hi95"] > got["hi68"]).all()
    # between an outer edge and the outermost centre: the centre's value holds
    edge = sf.completeness(0.5, 0.9, 23.0, 19.0)["completeness"]
    assert float(edge) == pytest.approx(f[0, 0, 0, 0], abs=1e-3)
    for bad in ((0.49, 1.2, 23.5, 20), (1.0, 1.81, 23.5, 20), (1.0, 1.2, 24.1, 20), (1.0, 1.2, 23.5, np.nan)):
        with pytest.raises(InputError, match="outside the measured grid"):
            sf.completeness(*bad)
    with pytest.raises(InputError, match="threshold"):
        sf.completeness(1.0, 1.2, 23.5, 20, threshold="p>=0.9")


def test_selection_function_gives_nan_next_to_an_insufficient_cell(tmp_path):
    sf, _, _ = _linear_sf(tmp_path)
    t = sf.table.copy()
    t.loc[t["cell"] == 0, ["completeness", "lo68", "hi68", "lo95", "hi95"]] = np.nan
    sf2 = SelectionFunction(t, sf.meta)
    assert np.isnan(sf2.completeness(0.6, 1.0, 23.5, 19.5)["completeness"])
    assert np.isfinite(sf2.completeness(2.9, 1.7, 23.5, 22.9)["completeness"])


def test_selection_function_at_top_edges_last_half_bins_centres_next_to_nan_and_its_cubes(tmp_path):
    sf, f, cen = _linear_sf(tmp_path)
    # the top edges themselves are inside the grid; between the last centre and the top edge the centre holds
    top = sf.completeness(3.0, 1.8, 24.0, 23.0)["completeness"]
    assert float(top) == pytest.approx(f[-1, -1, 0, -1], abs=1e-12)
    half = sf.completeness(2.9, 1.75, 23.9, 22.8)["completeness"]
    assert float(half) == pytest.approx(f[-1, -1, 0, -1], abs=1e-12)
    # exactly at a centre next to a NaN cell: the NaN has zero weight and does not spread
    t = sf.table.copy()
    nan_cell = int(np.ravel_multi_index((0, 0, 0, 0), sf.grid.shape))
    t.loc[t["cell"] == nan_cell, ["completeness", "lo68", "hi68", "lo95", "hi95"]] = np.nan
    sf2 = SelectionFunction(t, sf.meta)
    at = sf2.completeness(cen["theta_e"][1], cen["psf_fwhm"][0], 23.5, cen["arc_mag"][0])
    assert float(at["completeness"]) == pytest.approx(f[1, 0, 0, 0], abs=1e-12) and np.isfinite(at["hi95"])
    # the NaN cell as the upper corner of zero weight (the point sits on the centre below it)
    t2 = sf.table.copy()
    up = int(np.ravel_multi_index((2, 0, 0, 0), sf.grid.shape))
    t2.loc[t2["cell"] == up, ["completeness", "lo68", "hi68", "lo95", "hi95"]] = np.nan
    at2 = SelectionFunction(t2, sf.meta).completeness(cen["theta_e"][1], cen["psf_fwhm"][0], 23.5, cen["arc_mag"][0])
    assert float(at2["completeness"]) == pytest.approx(f[1, 0, 0, 0], abs=1e-12) and np.isfinite(at2["lo68"])
    # cubes: completeness by default, float whatever the column
    np.testing.assert_array_equal(sf.cube("p>=0.5"), sf.cube("p>=0.5", "completeness"))
    np.testing.assert_allclose(sf.cube("p>=0.5"), f, atol=1e-3)
    assert sf.cube("p>=0.5", "n").dtype == np.float64 and (sf.cube("p>=0.5", "n") == 1000).all()


def test_selection_function_fits_copy_is_readable_by_astropy(tmp_path):
    from astropy.table import Table
    sf, _, _ = _linear_sf(tmp_path)
    sf.save_fits(tmp_path / "sf.fits")
    t = Table.read(tmp_path / "sf.fits")
    assert len(t) == len(sf.table) and "completeness" in t.colnames


# ---------------------------------------------------------------- hosts and thresholds
def _manifest(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"g{i:03d}" for i in range(n)], "ra": rng.uniform(0, 1, n), "dec": rng.uniform(0, 1, n),
                         "split": np.array(["train", "val", "test"])[np.arange(n) % 3],
                         "label": (np.arange(n) % 10 == 0).astype(int), "tier": np.where(np.arange(n) % 10 == 0, "A", ""),
                         "psfsize_g": rng.uniform(1.0, 1.9, n), "psfsize_r": rng.uniform(0.95, 1.75, n),
                         "psfsize_z": rng.uniform(0.9, 1.6, n), "psfdepth_r": 25 * 10 ** (0.8 * (rng.uniform(23.2, 24.8, n) - 22.5)),
                         "flux_r": rng.uniform(5, 50, n)})


def test_hosts_come_only_from_the_audited_splits_negatives_and_no_truth_is_read():
    m = _manifest()
    h = select_hosts(m, ("val", "test"), m["id"])
    row = m.set_index("id").loc[h["id"]]
    assert set(row["split"]) <= {"val", "test"} and (row["label"] == 0).all()
    assert set(h["id"]) == set(m[m["split"].isin(["val", "test"]) & (m["label"] == 0)]["id"])
    with pytest.raises(ValueError, match="reads no truth"):
        SelectionConfig(checkpoint="c", manifest="m", store="s", out="o", truth="truth.parquet")
    h2 = select_hosts(m, ("val",), m["id"][:30])                      # only what the store holds
    assert set(h2["id"]) <= set(m["id"][:30])
    with pytest.raises(InputError, match="training split"):
        select_hosts(m, ("train", "val"), m["id"])
    with pytest.raises(ValueError, match="training split"):
        SelectionConfig(checkpoint="c", manifest="m", store="s", out="o", splits=("train",))
    with pytest.raises(InputError, match="psfdepth_r"):
        select_hosts(m.drop(columns="psfdepth_r"), ("val",), m["id"])


def test_host_cells_and_picks_are_deterministic_and_batch_free():
    m = _manifest(300)
    h = select_hosts(m, ("val", "test"), m["id"])
    g = Grid(GridConfig(psf_fwhm=AxisSpec(edges=(0.9, 1.3, 1.8)), depth=AxisSpec(edges=(23.0, 24.0, 25.0))))
    cells = host_cells(h, g)
    for (i, j), rows in cells.items():
        assert (g.bin_of("psf_fwhm", h["host_psfsize_r"].iloc[rows]) == i).all()
        assert (g.bin_of("depth", h["host_depth_r"].iloc[rows]) == j).all()
    rows = cells[(0, 0)]
    a = pick_hosts(rows, np.arange(50), 3)
    b = np.r_[pick_hosts(rows, np.arange(20), 3), pick_hosts(rows, np.arange(20, 50), 3)]
    np.testing.assert_array_equal(a, b)
    assert set(a) <= set(rows) and len(set(a)) > 1
    assert (pick_hosts(np.array([], int), np.arange(3), 0) == -1).all()


def test_host_table_values_units_and_invalid_rows_by_hand():
    from lensaudit.selection.hosts import HOST_COLUMNS
    m = _manifest(30)
    m.loc[4, "psfsize_g"] = np.nan                                    # val, label 0: no valid PSF -> out
    m.loc[5, "psfsize_z"] = 0.0                                       # test: a PSF of zero -> out
    m.loc[7, "psfdepth_r"] = -1.0                                     # val: no depth -> out
    m.loc[8, "psfsize_r"] = -0.5                                      # test: negative PSF -> out
    m = m.iloc[::-1].reset_index(drop=True)                           # ids out of order on input
    h = select_hosts(m, ("val", "test"), list(m["id"]) + ["not-a-row"])
    want = m[m["split"].isin(["val", "test"]) & (m["label"] == 0) & ~m["id"].isin(["g004", "g005", "g007", "g008"])]
    want = want.sort_values("id").reset_index(drop=True)
    assert list(h["id"]) == list(want["id"]) == sorted(want["id"])
    assert list(h.columns) == ["id", "split", "host_psfsize_g", "host_psfsize_r", "host_psfsize_z", "host_depth_r",
                               "host_mag_r"]
    assert list(h["split"]) == list(want["split"])
    for b in "grz":
        np.testing.assert_array_equal(h[f"host_psfsize_{b}"], want[f"psfsize_{b}"].to_numpy(float))
    # 5-sigma depth by hand: flux5 = 5 / sqrt(ivar) nanomaggies, m = 22.5 - 2.5 log10(flux5)
    np.testing.assert_allclose(h["host_depth_r"], 22.5 - 2.5 * np.log10(5 / np.sqrt(want["psfdepth_r"])), rtol=1e-12)
    np.testing.assert_allclose(h["host_mag_r"], 22.5 - 2.5 * np.log10(want["flux_r"]), rtol=1e-12)
    assert HOST_COLUMNS == ("psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_r")
    assert "host_mag_r" not in select_hosts(m.drop(columns="flux_r"), ("val",), m["id"])
    with pytest.raises(InputError, match=r"no negative of splits \['val'\]"):
        select_hosts(m, ("val",), ["nothing-stored"])
    bad = m.copy()
    bad["psfsize_r"] = 0.0
    with pytest.raises(InputError, match="no negative"):
        select_hosts(bad, ("val", "test"), m["id"])
    # whole-arcsec PSF columns come out as float; a flux of zero or below has no magnitude, without a warning
    ints = m.assign(psfsize_g=2, psfsize_r=1, psfsize_z=1, flux_r=np.where(np.arange(len(m)) % 2, 0.0, -1.0))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hi = select_hosts(ints, ("val", "test"), m["id"])
    assert all(hi[f"host_psfsize_{b}"].dtype == np.float64 for b in "grz") and not np.isfinite(hi["host_mag_r"]).any()


def test_screen_hosts_drops_non_finite_and_all_zero_bands_per_reason_in_any_batch_size():
    from lensaudit.selection.hosts import screen_hosts
    n = 8
    ids = [f"h{i}" for i in range(n)]
    cubes = {i: np.random.default_rng(k).normal(0, 1, (3, 5, 5)) for k, i in enumerate(ids)}
    cubes["h7"].reshape(-1)[15:30] = 0.0                              # zeros across g's end and r's start: kept
    cubes["h1"][2, 3, 3] = np.nan                                     # one non-finite pixel
    cubes["h2"][0] = 0.0                                              # g all zero (off the footprint)
    cubes["h3"][1, :2] = 0.0                                          # part of a band zero: kept
    cubes["h4"][1] = 0.0
    cubes["h4"][0, 0, 0] = np.inf                                     # both: counted as non-finite only
    cubes["h6"][2] = 0.0                                              # z all zero, the last band
    hosts = pd.DataFrame({"id": ids, "x": np.arange(n)})
    hosts.attrs["note"] = "kept"
    calls = []

    def cubes_of(batch):
        calls.append(list(batch))
        return np.stack([cubes[i] for i in batch])
    for batch in (2, 3, 512):
        calls.clear()
        kept, excluded = screen_hosts(hosts, cubes_of, batch=batch)
        assert list(kept["id"]) == ["h0", "h3", "h5", "h7"] and list(kept["x"]) == [0, 3, 5, 7]
        assert list(kept.index) == [0, 1, 2, 3] and list(kept.columns) == ["id", "x"] and kept.attrs == {"note": "kept"}
        assert excluded == {"non-finite pixels": ["h1", "h4"], "a band all zero": ["h2", "h6"]}
        assert sum(calls, []) == ids and max(len(c) for c in calls) == min(batch, n)
    with pytest.raises(InputError, match=r"every candidate host.*\(2 and 2\)"):
        screen_hosts(hosts.iloc[[1, 2, 4, 6]], cubes_of)


def test_host_cells_partition_the_grid_and_picks_are_uniform_seeded_and_reach_every_row():
    m = _manifest(600, seed=3)
    h = select_hosts(m, ("val", "test"), m["id"])
    g = Grid(GridConfig(psf_fwhm=AxisSpec(edges=(0.9, 1.3, 1.8)), depth=AxisSpec(edges=(23.0, 23.5, 24.0, 25.0))))
    cells = host_cells(h, g)
    assert sorted(cells) == [(i, j) for i in range(2) for j in range(3)]
    rows = np.concatenate(list(cells.values()))
    inside = (g.bin_of("psf_fwhm", h["host_psfsize_r"]) >= 0) & (g.bin_of("depth", h["host_depth_r"]) >= 0)
    assert len(rows) == len(set(rows)) == int(inside.sum())           # each host in one cell, none lost
    pool = np.array([3, 8, 11, 20, 41])
    pick = pick_hosts(pool, np.arange(20000), seed=5)
    counts = np.array([(pick == r).sum() for r in pool])
    assert counts.sum() == 20000                                      # every pick is one of the pool's rows
    chi2 = ((counts - 4000) ** 2 / 4000).sum()                        # uniform: chi2 with 4 dof, p(>25) ~ 5e-5
    assert chi2 < 25, counts
    assert (pick_hosts(pool, np.arange(200), seed=6) != pick_hosts(pool, np.arange(200), seed=5)).mean() > 0.5
    np.testing.assert_array_equal(pick_hosts(pool, np.array([7, 3]), 5), pick[[7, 3]])   # keyed by index
    assert pick_hosts(np.array([9]), np.arange(5), 1).tolist() == [9] * 5


def test_operating_points_set_fpr_thresholds_on_the_negatives():
    from lensaudit.evaluate.metrics import threshold_at_fpr
    neg = np.random.default_rng(1).random(5000)
    cfg = SelectionConfig(checkpoint="c", manifest="m", store="s", out="o")
    ops = {op.name: op for op in operating_points(neg, cfg)}
    assert ops["p>=0.5"].threshold == 0.5 and ops["p>=0.5"].kind == "probability"
    assert ops["fpr=0.001"].threshold == threshold_at_fpr(neg, 1e-3) and ops["fpr=0.001"].resolved
    assert (neg >= ops["fpr=0.001"].threshold).mean() <= 1e-3 and "val/test negatives" in ops["fpr=0.001"].origin
    assert not ops["fpr=0.0001"].resolved and "cannot resolve" in ops["fpr=0.0001"].origin


# ---------------------------------------------------------------- end to end with a small model
def _sel_cfg(d, out, **kw):
    base = {"checkpoint": str(d / "ck.pt"), "manifest": str(d / "manifest.parquet"), "store": str(d / "store"),
            "out": str(out), "families": [{"name": "sersic", "kind": "sersic"}, {"name": "planted", "kind": "planted"}],
            "grid": {"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": [0.9, 1.8]},
                     "depth": {"edges": [23.0, 25.0]}, "arc_mag": {"edges": [19.0, 21.0, 25.0]}},
            "n_per_cell": 6, "min_count": 3, "chunk_size": 16, "device": "cpu",
            "thresholds": {"probability": [0.3, 0.5], "fpr": [0.05]}}
    base.update(kw)
    return SelectionConfig(**base)


def test_selection_run_writes_tables_resumes_and_does_not_depend_on_chunking(small_run, tmp_path):
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.run import run_selection

    d = small_run
    s = run_selection(_sel_cfg(d, tmp_path / "a"))
    assert s["n_hosts"] > 0 and set(s["families"]) == {"sersic", "planted"}
    recs = read_injections(tmp_path / "a", "sersic")
    m = pd.read_parquet(d / "manifest.parquet").set_index("id")
    assert set(m.loc[recs["host_id"], "split"]) <= {"val", "test"} and (m.loc[recs["host_id"], "label"] == 0).all()
    assert len(recs) == 4 * 6 and recs["index"].is_unique                  # 4 cells x 6 injections
    # theta_E and the lensed magnitude lie in their cells
    g = Grid({a: np.asarray(e) for a, e in SelectionFunction.load(tmp_path / "a" / "selection_sersic.parquet")
              .meta["edges"].items()})
    assert (g.bin_of("theta_e", recs["theta_e"]) == recs["i_theta_e"]).all()
    assert (g.bin_of("arc_mag", recs["arc_mag_r"]) == recs["i_arc_mag"]).all()
    sf = SelectionFunction.load(tmp_path / "a" / "selection_sersic.parquet")
    t = sf.table[sf.table["threshold"] == "p>=0.5"].set_index("cell")
    k = recs.groupby("cell")["probability"].apply(lambda p: int((p > 0.5).sum()))
    np.testing.assert_array_equal(t.loc[k.index, "k"], k.to_numpy())
    assert (t["n"] == 6).all()
    assert (tmp_path / "a" / "figures" / "heatmap_sersic.png").stat().st_size > 1000
    marg = pd.read_parquet(tmp_path / "a" / "marginals.parquet")
    assert {"src_r_half_arcsec", "src_concentration", "theta_e", "arc_mag"} <= set(marg["quantity"])
    # resume: nothing is recomputed
    chunks = sorted((tmp_path / "a" / "injections" / "sersic").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in chunks]
    run_selection(_sel_cfg(d, tmp_path / "a"))
    assert [p.stat().st_mtime_ns for p in chunks] == mtimes
    # another chunking gives the same injections and scores
    run_selection(_sel_cfg(d, tmp_path / "b", chunk_size=40))
    other = read_injections(tmp_path / "b", "sersic").sort_values("index").reset_index(drop=True)
    mine = recs.sort_values("index").reset_index(drop=True)
    np.testing.assert_allclose(other["probability"], mine["probability"], atol=1e-5)
    np.testing.assert_array_equal(other["host_id"], mine["host_id"])


def test_inject_command_writes_cutouts_records_and_a_gallery(small_run, tmp_path):
    import yaml
    from astropy.io import fits

    from lensaudit.cli import main
    d = small_run
    cfg = _sel_cfg(d, tmp_path / "x", engine={"shot_noise": False}).model_dump(mode="json")
    (tmp_path / "sel.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["inject", "--config", str(tmp_path / "sel.yaml"), "--family", "sersic", "--n", "5",
                 "--out", str(tmp_path / "inj")]) == 0
    with fits.open(tmp_path / "inj" / "injected.fits") as h, fits.open(tmp_path / "inj" / "hosts.fits") as hh:
        diff = h[0].data.astype(float) - hh[0].data.astype(float)
    rec = pd.read_parquet(tmp_path / "inj" / "records.parquet")
    # the arc's flux in the cutout is the recorded lensed magnitude
    np.testing.assert_allclose(22.5 - 2.5 * np.log10(diff[:, 1].sum(axis=(1, 2))), rec["arc_mag_r"], atol=2e-3)
    assert (tmp_path / "inj" / "gallery.png").exists()
    assert main(["inject", "--config", str(tmp_path / "sel.yaml"), "--family", "nope", "--n", "5",
                 "--out", str(tmp_path / "inj2")]) == 2


# ---------------------------------------------------------------- realism probe
def test_probe_auc_is_chance_for_one_distribution_and_high_for_two():
    from lensaudit.realism import probe_auc
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(150, 8)), rng.normal(size=(300, 8))
    same = probe_auc(a, b, n_boot=200, n_permutations=19, seed=1)
    assert 0.35 < same["auc"] < 0.65 and same["permutation_p"] > 0.05
    c = rng.normal(size=(300, 8)) + np.r_[1.5, np.zeros(7)]
    diff = probe_auc(a, c, n_boot=200, n_permutations=19, seed=1)
    assert diff["auc"] > 0.8 and diff["permutation_p"] == pytest.approx(1 / 20)
    assert diff["null"]["q95"] < 0.65 and diff["null"]["q95"] < diff["auc_mde80"] < diff["auc"]
    lo, hi = diff["interval"]["ci95"]
    assert lo < diff["auc"] < hi
    with pytest.raises(ValueError):
        probe_auc(a, rng.normal(size=(10, 3)))


def test_the_permutation_null_refits_the_probe(monkeypatch):
    """Every permutation runs the whole cross-validation again: (1 + n_permutations) x folds fits, each on the
    permuted labels it is given (a probe fitted once and rescored would give an optimistic null)."""
    import lensaudit.realism.probe as probe
    from lensaudit.realism import probe_auc
    fits = []
    real_fit = probe.fit_logistic_l2

    def counting_fit(x, y, weight, *a, **kw):
        fits.extend(yf[wf > 0].copy() for yf, wf in zip(y, weight, strict=True))   # each fit's training labels
        return real_fit(x, y, weight, *a, **kw)

    monkeypatch.setattr(probe, "fit_logistic_l2", counting_fit)
    rng = np.random.default_rng(4)
    out = probe_auc(rng.normal(size=(30, 4)), rng.normal(size=(60, 4)), folds=3, n_boot=10, n_permutations=7, seed=2)
    assert len(fits) == (1 + 7) * 3 and out["n_permutations"] == 7 and len(out["null_values"]) == 7
    label_sets = {tuple(y) for y in fits}
    assert len(label_sets) > 3 * 2                      # the permuted refits saw other labels than the first fit
    assert 1 / 8 <= out["permutation_p"] <= 1


def test_frechet_distance_matches_the_gaussian_formula():
    from lensaudit.realism import frechet_distance
    rng = np.random.default_rng(2)
    a = rng.normal([0, 0, 0], [1.0, 2.0, 0.5], size=(200000, 3))
    b = rng.normal([1, 0, -1], [2.0, 2.0, 1.0], size=(200000, 3))
    exact = 1 + 1 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2         # |dmu|^2 + sum (s1 - s2)^2 for diagonal covariances
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_brightness_match_gives_equal_ratios_per_bin():
    from lensaudit.realism import brightness_match
    rng = np.random.default_rng(3)
    real = rng.normal(21, 0.8, 100)
    inj = rng.uniform(18, 25, 3000)
    kr, ki = brightness_match(real, inj, 0.5, 3, seed=0)
    b = lambda v: np.floor((v - 18) / 0.5)  # noqa: E731
    rc = pd.Series(b(real[kr])).value_counts()
    ic = pd.Series(b(inj[ki])).value_counts()
    assert (ic.reindex(rc.index) == 3 * rc).all()
    assert len(kr) >= 95


# ---------------------------------------------------------------- closure on synthetic truths
def _synthetic(n, rng, det_shift=0.0):
    te = rng.uniform(0.5, 3.0, n)
    mag = rng.uniform(19, 24, n)
    p = 1 / (1 + np.exp(-(2.0 * (22 - mag) + 0.8 * (te - 1.5) + det_shift)))
    det = rng.random(n) < p
    return te, mag, np.where(det, 0.9, 0.1)


def _closure_inputs(seed, det_shift=0.0, n_true=600, n_inj=20000):
    rng = np.random.default_rng(seed)
    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.5, 3.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.8)),
                           depth=AxisSpec(edges=(23.0, 25.0)), arc_mag=AxisSpec(edges=(19, 20, 21, 22, 23, 24))))
    te, mag, prob = _synthetic(n_true, rng)
    true = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "psfsize_r": 1.3, "depth_r": 24.0, "probability": prob})
    te, mag, prob = _synthetic(n_inj, rng, det_shift)
    inj = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "host_psfsize_r": 1.3, "host_depth_r": 24.0,
                        "probability": prob})
    inj["cell"] = np.ravel_multi_index(tuple(grid.bin_of(a, inj[c]) for a, c in
                                             (("theta_e", "theta_e"), ("psf_fwhm", "host_psfsize_r"),
                                              ("depth", "host_depth_r"), ("arc_mag", "arc_mag_r"))), grid.shape)
    return true, inj, grid


def _summary(s):
    return s[s["threshold"] == "p>=0.5"].iloc[0]


def test_closure_passes_for_a_family_that_is_the_truth_and_fails_for_a_biased_one():
    ths = [OperatingPoint.fixed(0.5)]
    true, inj, grid = _closure_inputs(0)
    bins, s = closure_test(true, inj, grid, ths, n_boot=400)
    good = _summary(s)
    assert good["lo95"] < 0 < good["hi95"] and good["p_value"] > 0.01 and good["chi2_p"] > 0.01
    assert good["n_true_covered"] == good["n_true_in_grid"] > 500 and good["mde80"] == pytest.approx(2.80 * good["se"], rel=1e-3)
    # the interval is mostly the truth's: 600 lenses, c ~ 0.4 -> binomial sd ~ 0.02 at most
    assert 0.005 < good["se"] < 0.025
    true, inj, grid = _closure_inputs(0, det_shift=1.5)          # injections too easy to find
    _, s = closure_test(true, inj, grid, ths, n_boot=400)
    bad = _summary(s)
    assert bad["p_value"] < 1e-3 and bad["diff"] > 0 and bad["lo95"] > 0 and bad["c_inj"] > bad["c_true"]
    assert {"theta_e x arc_mag", "theta_e", "arc_mag", "psf_fwhm", "depth"} == set(bins["quantity"])
    merged = bins[(bins["quantity"] == "theta_e x arc_mag")]
    assert (merged["n_true"] >= 10).all() and merged["n_true"].sum() == good["n_true_covered"]
    assert good["dof"] == len(merged)


def test_merge_bins_reaches_the_minimum_count_in_order():
    lab = merge_bins(np.array([3, 0, 8, 12, 1, 1, 2, 20, 4]), 10)
    counts = np.bincount(lab, weights=[3, 0, 8, 12, 1, 1, 2, 20, 4])
    assert (np.diff(lab) >= 0).all() and (np.diff(lab) <= 1).all() and (counts >= 10).all()
    assert merge_bins(np.array([4, 3]), 10).tolist() == [0, 0]            # too few in all: one bin


def test_closure_interval_widens_when_the_stamps_are_few():
    """Library bootstrap: every stamp has its own detectability; with 5 stamps behind 20,000 injections the
    family's completeness is uncertain by the stamps' spread, with 2,000 stamps it is not."""
    ths = [OperatingPoint.fixed(0.5)]
    widths = {}
    for n_stamps in (5, 2000):
        true, inj, grid = _closure_inputs(3)
        rng = np.random.default_rng(11)
        stamp = rng.integers(0, n_stamps, len(inj))
        effect = rng.normal(0, 0.25, n_stamps)[stamp]
        p_det = np.clip(np.where(inj["probability"] > 0.5, 0.75, 0.25) + effect, 0, 1)
        inj["probability"] = np.where(rng.random(len(inj)) < p_det, 0.9, 0.1)
        bins_lib, with_lib = closure_test(true, inj, grid, ths, n_boot=300, stamp_ids=stamp)
        bins_plain, without = closure_test(true, inj, grid, ths, n_boot=300)
        widths[n_stamps] = (_summary(with_lib)["se"], _summary(without)["se"])
        if n_stamps == 5:              # the marginal bins resample the stamps too
            m_lib, m_plain = (b[b["quantity"] == "theta_e"]["se"].to_numpy() for b in (bins_lib, bins_plain))
            assert np.median(m_lib / m_plain) > 1.3
        assert _summary(with_lib)["library_bootstrap"] and _summary(with_lib)["n_stamps"] == len(np.unique(stamp))
        assert not _summary(without)["library_bootstrap"] and _summary(without)["n_stamps"] == 0
    assert widths[5][0] > 1.5 * widths[5][1]                  # few stamps: the library's variance dominates
    assert widths[2000][0] == pytest.approx(widths[2000][1], rel=0.25)
    assert widths[5][0] > 1.5 * widths[2000][0]


def test_closure_detects_a_planted_bias_of_the_stated_size_at_the_stated_power():
    """The test stated in the module: with a family whose completeness is off by the reported MDE80 in every
    cell, |z| > 1.96 in about 80 percent of repetitions; with no bias, in about 5 percent."""
    ths = [OperatingPoint.fixed(0.5)]
    true, inj, grid = _closure_inputs(5, n_true=800, n_inj=4000)
    mde = _summary(closure_test(true, inj, grid, ths, n_boot=300)[1])["mde80"]
    # the added detection probability whose expected Delta over the lenses is the MDE (clipped at 1 where p ~ 1)
    te, mag, _ = _synthetic(100000, np.random.default_rng(0))
    p_all = 1 / (1 + np.exp(-(2.0 * (22 - mag) + 0.8 * (te - 1.5))))
    from scipy.optimize import brentq
    planted = brentq(lambda b: np.mean(np.clip(p_all + b, 0, 1) - p_all) - mde, 0, 0.5)
    hits = {0.0: 0, planted: 0}
    reps = 60
    for k in range(reps):
        rng = np.random.default_rng(100 + k)
        te, mag, _ = _synthetic(800, rng)
        pt = 1 / (1 + np.exp(-(2.0 * (22 - mag) + 0.8 * (te - 1.5))))
        true = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "psfsize_r": 1.3, "depth_r": 24.0,
                             "probability": np.where(rng.random(800) < pt, 0.9, 0.1)})
        te, mag, _ = _synthetic(4000, rng)
        pi = 1 / (1 + np.exp(-(2.0 * (22 - mag) + 0.8 * (te - 1.5))))
        for bias in hits:
            det = rng.random(4000) < np.clip(pi + bias, 0, 1)
            inj = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "host_psfsize_r": 1.3, "host_depth_r": 24.0,
                                "probability": np.where(det, 0.9, 0.1)})
            inj["cell"] = np.ravel_multi_index((grid.bin_of("theta_e", te), np.zeros(4000, int), np.zeros(4000, int),
                                                grid.bin_of("arc_mag", mag)), grid.shape)
            z = _summary(closure_test(true, inj, grid, ths, n_boot=200, seed=k, marginal_bins=False)[1])["z"]
            hits[bias] += abs(z) > 1.96
    assert hits[0.0] / reps <= 0.15                     # size: nominal 5 percent (binomial sd 3 percent at 60 reps)
    assert 0.6 <= hits[planted] / reps <= 0.95          # power: nominal 80 percent at the stated MDE


def test_a_bad_stamp_library_stops_the_run_before_any_injection(small_run, tmp_path):
    from lensaudit.inject import StampLibraryError
    from lensaudit.selection.run import run_selection

    (tmp_path / "bad.fits").write_bytes(b"not a fits file")
    cfg = _sel_cfg(small_run, tmp_path / "r", families=[{"name": "sersic", "kind": "sersic"},
                                                         {"name": "st", "kind": "stamps",
                                                          "stamp_library": str(tmp_path / "bad.fits")}])
    with pytest.raises(StampLibraryError, match="bad.fits"):
        run_selection(cfg)
    assert not (tmp_path / "r" / "injections").exists()


def test_realism_and_closure_commands_print_their_tables(small_run, tmp_path, capsys):
    import yaml

    from lensaudit.cli import main
    from lensaudit.cutouts import CutoutStore
    from lensaudit.selection.run import run_selection
    from lensaudit.train.score import score_manifest, write_predictions

    d = small_run
    run_selection(_sel_cfg(d, tmp_path / "run"))
    m = pd.read_parquet(d / "manifest.parquet")
    aud = m[m["split"].isin(["val", "test"])]
    preds = score_manifest(d / "ck.pt", aud, CutoutStore(d / "store"), features=True)
    write_predictions(preds, tmp_path / "preds.parquet", d / "ck.pt")
    cfg = {"selection_run": str(tmp_path / "run"), "predictions": str(tmp_path / "preds.parquet"),
           "manifest": str(d / "manifest.parquet"), "out": str(tmp_path / "real"), "store": str(d / "store"),
           "n_subsamples": 3, "match_bin_mag": 6.0, "probe": {"folds": 2, "n_boot": 50, "n_permutations": 5}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["realism", "--config", str(tmp_path / "real.yaml")]) == 0
    out = capsys.readouterr().out
    assert "probe AUC" in out and "planted" in out and ("GO" in out)
    table = pd.read_parquet(tmp_path / "real" / "realism.parquet")
    assert set(table["family"]) == {"sersic", "planted"} and table["probe_auc"].between(0, 1).all()
    assert (table["n_permutations"] == 5).all() and table["permutation_p"].between(1 / 6, 1).all()
    assert table["verdict_stability"].between(0, 1).all() and table["score_shift"].between(0, 1).all()
    real = pd.read_parquet(tmp_path / "real" / "real_lenses.parquet")
    assert {"meas_arc_mag_r", "meas_arc_snr_r", "sky_sigma_r"} <= set(real.columns) and "features" not in real
    # closure against a synthetic set of "true lenses" placed in the grid
    rng = np.random.default_rng(0)
    n = 40
    true = pd.DataFrame({"id": [f"t{i}" for i in range(n)], "theta_e": rng.uniform(0.6, 2.9, n),
                         "arc_mag_r": rng.uniform(19.2, 24.8, n), "psfsize_r": 1.3, "depth_r": 24.0,
                         "probability": rng.random(n)})
    true.to_parquet(tmp_path / "true.parquet")
    assert main(["selection", "closure", "--run", str(tmp_path / "run"), "--true-lenses", str(tmp_path / "true.parquet"),
                 "--realism", str(tmp_path / "real" / "realism.parquet"), "--out", str(tmp_path / "cl"),
                 "--min-true", "3"]) == 0
    out = capsys.readouterr().out
    assert "closure at p>=0.5" in out and "MDE80" in out and "sersic" in out
    s = pd.read_parquet(tmp_path / "cl" / "closure_summary.parquet")
    assert {"diff", "lo95", "hi95", "mde80", "gate_p", "gate_verdict"} <= set(s.columns)
    assert (s["lo95"] <= s["diff"] + 1e-9).all() and (s["diff"] <= s["hi95"] + 1e-9).all()
    assert (tmp_path / "cl" / "closure.png").exists()


@pytest.mark.parametrize("name", ["selection/demo.yaml", "selection/full_grid.yaml"])
def test_bundled_selection_configs_validate(name):
    from lensaudit.config import load_config
    from lensaudit.configs import bundled_config

    cfg = load_config(bundled_config(name), SelectionConfig)
    assert {f.kind for f in cfg.families} == {"sersic", "clumpy", "stamps", "planted"}
    assert "train" not in cfg.splits and Grid(cfg.grid).n_cells > 0


def test_bundled_realism_config_validates():
    from lensaudit.config import load_config
    from lensaudit.configs import bundled_config
    from lensaudit.realism import RealismConfig

    cfg = load_config(bundled_config("selection/demo_realism.yaml"), RealismConfig)
    assert cfg.tiers == ("A",) and cfg.probe.n_permutations >= 200 and 0 < cfg.alpha < 0.5
    with pytest.raises(ValueError, match="reads no truth"):
        RealismConfig(selection_run="r", predictions="p", manifest="m", store="s", out="o", real_lens_table="t")


def test_extra_models_score_the_same_injections_without_changing_them(small_run, tmp_path):
    """Extra checkpoints (ensemble members) add columns; the draws, hosts and the main scores stay as they were,
    and a configuration without extras is tagged by its config and its inputs' contents alone."""
    from lensaudit.inject.records import RECORDS_VERSION, read_injections
    from lensaudit.selection.run import run_selection

    d = small_run
    plain = run_selection(_sel_cfg(d, tmp_path / "a", families=[{"name": "sersic", "kind": "sersic"}]))
    extra = run_selection(_sel_cfg(d, tmp_path / "b", families=[{"name": "sersic", "kind": "sersic"}],
                                   extra_checkpoints={"twin": str(d / "ck.pt")}))
    assert plain["config_tag"] != extra["config_tag"]
    a = read_injections(tmp_path / "a", "sersic").sort_values("index").reset_index(drop=True)
    b = read_injections(tmp_path / "b", "sersic").sort_values("index").reset_index(drop=True)
    np.testing.assert_array_equal(a["host_id"], b["host_id"])
    np.testing.assert_array_equal(a["theta_e"], b["theta_e"])
    np.testing.assert_array_equal(a["probability"], b["probability"])
    np.testing.assert_allclose(b["probability_twin"], b["probability"], atol=1e-6)  # the same model, scored again
    cfg = _sel_cfg(d, tmp_path / "c")
    from lensaudit.utils.io import sha256_json

    assert "extra_checkpoints" not in cfg.model_dump(exclude={"extra_checkpoints"})
    from lensaudit.cutouts import CutoutStore
    from lensaudit.selection.run import input_fingerprints

    tag = run_selection(cfg)["config_tag"]
    inputs = input_fingerprints(cfg, CutoutStore(cfg.store))
    assert set(inputs) == {"checkpoint", "manifest", "store"}          # contents, not paths, key the reuse
    assert tag == sha256_json({"config": cfg.model_dump(mode="json", exclude={"out", "device", "batch_size",
                                                                              "extra_checkpoints", "scores",
                                                                              "gate_reference"}),
                               "inputs": inputs, "records": RECORDS_VERSION})[:12]
    assert run_selection(cfg)["config_tag"] == tag                     # the same inputs: the same chunks
    with pytest.raises(ValueError, match="extra_checkpoints"):
        _sel_cfg(d, tmp_path / "e", extra_checkpoints={"a b": "x"})


def test_injection_records_are_read_by_tag_in_chunk_order_without_features_and_refuse_broken_chunks(tmp_path):
    from lensaudit.artifacts import SelectionRunDir, write_doc
    from lensaudit.artifacts.kinds import SELECTION_SUMMARY
    from lensaudit.inject.records import chunk_ok, chunk_path, current_tag, read_injections

    rd = SelectionRunDir(tmp_path / "run")
    with pytest.raises(InputError, match="run: no .*summary.* \\(not a finished selection run\\)"):
        current_tag(tmp_path / "run")
    p = chunk_path(tmp_path / "run", "sersic", "abc", 3)
    assert p == rd.family_injections("sersic") / "abc_chunk_00003.parquet" == chunk_path(rd, "sersic", "abc", 3)
    p.parent.mkdir(parents=True)
    for k, ix in ((12, [5, 6]), (3, [0, 1, 2])):     # written out of order: read back in chunk order
        pd.DataFrame({"index": ix, "probability": [0.5] * len(ix), "features": [[1.0, 2.0]] * len(ix)}).to_parquet(
            chunk_path(rd, "sersic", "abc", k))
    pd.DataFrame({"index": [9], "probability": [0.1]}).to_parquet(chunk_path(rd, "sersic", "old", 0))
    write_doc(rd.summary, SELECTION_SUMMARY, {"families": ["sersic"], "n_hosts": 1, "cells": 1, "config_tag": "abc"})
    assert current_tag(tmp_path / "run") == "abc"
    got = read_injections(tmp_path / "run", "sersic")
    assert got["index"].tolist() == [0, 1, 2, 5, 6] and got.index.tolist() == list(range(5))
    assert got.columns.tolist() == ["index", "probability"]
    with_f = read_injections(rd, "sersic", "abc", features=True)
    assert with_f.columns.tolist() == ["index", "probability", "features"]
    assert read_injections(rd, "sersic", "old")["index"].tolist() == [9]
    with pytest.raises(InputError, match="no injection chunks of configuration new"):
        read_injections(rd, "sersic", "new")
    bad = chunk_path(rd, "sersic", "abc", 20)
    bad.write_bytes(chunk_path(rd, "sersic", "abc", 3).read_bytes()[:-40])     # truncated
    assert chunk_ok(chunk_path(rd, "sersic", "abc", 3)) and not chunk_ok(bad) and not chunk_ok(tmp_path / "none")
    with pytest.raises(InputError, match="abc_chunk_00020.parquet: a corrupt injection chunk"):
        read_injections(rd, "sersic")


def test_plan_family_indexes_cells_in_c_order_and_draws_hosts_per_psf_and_depth_cell():
    from lensaudit.selection.run import plan_family

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.3, 1.8)),
                           depth=AxisSpec(edges=(23.0, 24.0)), arc_mag=AxisSpec(edges=(19.0, 21.0, 23.0))))
    cfg = SelectionConfig(checkpoint="c", manifest="m", store="s", out="o", n_per_cell=3, seed=5)
    cells = {(0, 0): np.array([4, 7, 9]), (1, 0): np.array([], int)}
    plan = plan_family(cfg, grid, pd.DataFrame(), cells)
    assert plan.columns.tolist() == ["index", "cell", "i_theta_e", "i_psf_fwhm", "i_depth", "i_arc_mag", "host_row"]
    assert plan["index"].tolist() == list(range(8 * 3)) and plan["cell"].tolist() == [i // 3 for i in range(24)]
    for r in plan.itertuples():
        assert (r.i_theta_e, r.i_psf_fwhm, r.i_depth, r.i_arc_mag) == np.unravel_index(r.cell, grid.shape)
    low = plan["i_psf_fwhm"] == 0
    np.testing.assert_array_equal(plan.loc[low, "host_row"], pick_hosts(np.array([4, 7, 9]), plan.loc[low, "index"], 5))
    assert set(plan.loc[low, "host_row"]) == {4, 7, 9} and (plan.loc[~low, "host_row"] == -1).all()
    # a (PSF, depth) cell missing from the host cells altogether: no host either
    only = plan_family(cfg, grid, pd.DataFrame(), {(0, 0): np.array([4, 7, 9])})
    assert (only.loc[~low, "host_row"] == -1).all() and only.loc[low, "host_row"].tolist() == plan.loc[low, "host_row"].tolist()


def test_plan_memory_is_the_records_and_a_chunk_of_cutouts_and_refuses_what_cannot_fit(monkeypatch):
    import lensaudit.utils.memory as memory
    from lensaudit.selection.run import BYTES_PER_INJECTION, plan_memory

    cfg = SelectionConfig(checkpoint="c", manifest="m", store="s", out="o", n_per_cell=7, chunk_size=64)
    want = Grid(cfg.grid).n_cells * 7 * BYTES_PER_INJECTION + 64 * 3 * 101 * 101 * 4 * 6
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * want)
    assert plan_memory(cfg) == want
    monkeypatch.setattr(memory, "available_bytes", lambda: want)
    with pytest.raises(InputError, match=f"{Grid(cfg.grid).n_cells * 7:,} injections per family .* chunk_size 64"):
        plan_memory(cfg)


def test_marginals_against_hand_counts_with_grid_edges_data_ranges_and_quantile_bins():
    from lensaudit.selection.run import marginals

    recs = pd.DataFrame({"family": "f", "i_theta_e": [0, 0, 1, 1, 1], "theta_e": [0.6, 0.9, 1.2, 1.5, 1.9],
                         "i_arc_mag": [2, 2, 2, 0, 0], "arc_mag_r": [23.5, 23.1, 23.9, 19.2, 19.9],
                         "src_r_half_arcsec": [0.1, 0.2, 0.3, 0.4, 0.5],
                         "probability": [0.9, 0.2, 0.5, 0.7, 0.1]})
    ops = [OperatingPoint.fixed(0.5), OperatingPoint.fixed(0.8)]
    edges = {"theta_e": np.array([0.5, 1.0, 2.0]), "arc_mag": np.array([19.0, 21.0, 23.0, 25.0])}
    m = marginals(recs, ops, min_count=2, n_quantile_bins=2, edges=edges)
    assert m.columns.tolist() == ["family", "quantity", "bin", "lo", "hi", "median", "threshold", "n", "k",
                                  "completeness", "lo68", "hi68", "lo95", "hi95", "status"]
    assert m["quantity"].unique().tolist() == ["theta_e", "arc_mag", "src_r_half_arcsec"]   # absent columns: none
    key = m.set_index(["quantity", "bin", "threshold"])
    r = key.loc[("theta_e", 1, "p>=0.5")]
    assert (r["lo"], r["hi"], r["median"], r["n"], r["k"]) == (1.0, 2.0, 1.5, 3, 2)
    assert r["completeness"] == pytest.approx(2 / 3) and r["status"] == "ok" and isinstance(r["lo68"], float)
    assert key.loc[("theta_e", 0, "p>=0.8"), "k"] == 1
    assert key.loc[("arc_mag", 2, "p>=0.5"), ["lo", "hi", "n", "k"]].tolist() == [23.0, 25.0, 3, 2]
    assert sorted(m.loc[m["quantity"] == "arc_mag", "bin"].unique()) == [0, 2]             # bins with injections
    # quantile bins: edges at the 0, 50 and 100th percentiles (0.1, 0.3, 0.5); the largest value is in the last bin
    q = m[(m["quantity"] == "src_r_half_arcsec") & (m["threshold"] == "p>=0.5")]
    assert q[["lo", "hi", "n", "k"]].to_numpy().tolist() == [[0.1, 0.3, 2, 1], [0.3, 0.5, 3, 2]]
    # every quantity, each from its own column: PSF and depth bins from the hosts' columns, beta_frac in quantiles
    # (five by default)
    full = recs.assign(i_psf_fwhm=[0, 1, 1, 1, 0], host_psfsize_r=[1.0, 1.4, 1.5, 1.6, 1.1], i_depth=0,
                       host_depth_r=[23.1, 23.2, 23.3, 23.4, 23.5], src_concentration=[2.0, 2.5, 3.0, 3.5, 4.0],
                       beta_frac=[0.1, 0.15, 0.2, 0.3, 0.4])
    mf = marginals(full, ops[:1], min_count=1)
    assert mf["quantity"].unique().tolist() == ["theta_e", "psf_fwhm", "depth", "arc_mag", "src_r_half_arcsec",
                                                "src_concentration", "beta_frac"]
    kf = mf.set_index(["quantity", "bin"])
    assert kf.loc[("psf_fwhm", 1), ["lo", "hi", "n", "k"]].tolist() == [1.4, 1.6, 3, 2]
    assert kf.loc[("depth", 0), ["lo", "hi", "median", "n"]].tolist() == [23.1, 23.5, 23.3, 5]
    assert len(kf.loc["beta_frac"]) == 5 and kf.loc[("beta_frac", 4), "median"] == 0.4
    # without edges: the range of the values in the bin
    ne = marginals(recs, ops[:1], min_count=2).set_index(["quantity", "bin"])
    assert ne.loc[("theta_e", 1), ["lo", "hi"]].tolist() == [1.2, 1.9]
    assert ne.loc[("theta_e", 0), "status"] == "ok" and marginals(recs, ops[:1], 3).iloc[0]["status"] == "insufficient"
    # a family with a single injection: one bin per grid axis, no quantile bins (one value has no spread)
    one = marginals(recs.iloc[[2]], ops[:1], min_count=1)
    assert one[["family", "quantity", "bin", "n", "k"]].to_numpy().tolist() == [["f", "theta_e", 1, 1, 1],
                                                                              ["f", "arc_mag", 2, 1, 1]]


def test_run_closure_wires_each_familys_selection_function_injections_and_gate_row(small_run, tmp_path, monkeypatch):
    from lensaudit.artifacts import SelectionRunDir, read_doc, write_artifact_table, write_doc
    from lensaudit.artifacts.kinds import OPERATING_POINTS, REALISM
    from lensaudit.artifacts.tables import ArtifactError
    from lensaudit.inject import write_stamp_library
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.closure import run_closure
    from lensaudit.selection.run import run_selection

    run = tmp_path / "run"
    g = (np.arange(48) - 23.5) * 0.04
    prof = np.exp(-np.hypot(*np.meshgrid(g, g)) / np.array([0.1, 0.15, 0.2, 0.25, 0.3])[:, None, None])
    imgs = prof[:, None] / prof.sum(axis=(1, 2))[:, None, None, None] * np.array([0.5, 1.0, 1.5])[None, :, None, None]
    meta = pd.DataFrame({"ID": [f"s{i}" for i in range(5)], "Z": 1.0, "MAG_G": 22.5 - 2.5 * np.log10(0.5),
                         "MAG_R": 22.5, "MAG_Z": 22.5 - 2.5 * np.log10(1.5)})
    lib = write_stamp_library(tmp_path / "lib.fits", imgs, 0.04, meta)
    fams = [{"name": "sersic", "kind": "sersic"}, {"name": "planted", "kind": "planted"},
            {"name": "stamps", "kind": "stamps", "stamp_library": str(lib)}]
    tag = run_selection(_sel_cfg(small_run, run, families=fams))["config_tag"]
    rng = np.random.default_rng(1)
    n = 40                                     # 10 in each (theta_E, arc magnitude) bin: min_true 10 keeps them apart
    box = [(te, m) for te in ((0.6, 1.4), (1.6, 2.9)) for m in ((19.2, 20.8), (21.2, 24.8))]
    true = pd.DataFrame({"id": [f"t{i}" for i in range(n)],
                         "theta_e": np.concatenate([rng.uniform(*te, 10) for te, _ in box]),
                         "arc_mag_r": np.concatenate([rng.uniform(*m, 10) for _, m in box]), "psfsize_r": 1.3,
                         "depth_r": 24.0, "probability": rng.random(n)})
    true.to_parquet(tmp_path / "true.parquet")
    cols = {c.name: [] for c in REALISM.columns}
    for fam, auc, p, v in (("sersic", 0.61, 0.04, "NO-GO"),):
        row = {c.name: 0.0 for c in REALISM.columns} | {"family": fam, "planted": False, "probe_auc": auc,
                                                          "permutation_p": p, "verdict": v, "rule": "r",
                                                          "n_real": 5, "n_injected": 9}
        for k in cols:
            cols[k].append(row[k])
    write_artifact_table(pd.DataFrame(cols), tmp_path / "realism.parquet", REALISM)
    out = tmp_path / "new" / "deep" / "closure"                       # parents are made
    import lensaudit.selection.closure as closure_mod
    drawn = []
    real_figure = closure_mod.closure_figure
    monkeypatch.setattr(closure_mod, "closure_figure", lambda b, path, th: drawn.append(th) or real_figure(b, path, th))
    per_bin, summ = run_closure(run, tmp_path / "true.parquet", out, realism=tmp_path / "realism.parquet")
    assert drawn == ["p>=0.5"]                                        # the figure shows the headline threshold
    assert per_bin.index.equals(pd.RangeIndex(len(per_bin))) and summ.index.equals(pd.RangeIndex(len(summ)))
    from lensaudit.artifacts import ClosureDir
    csv = pd.read_csv(ClosureDir(out).summary_csv)
    assert list(csv.columns) == list(summ.columns) and csv.columns[0] == "family" and len(csv) == len(summ)
    rd = SelectionRunDir(run)
    ops = [OperatingPoint.from_dict(d) for d in read_doc(rd.operating_points, OPERATING_POINTS)["points"]]
    for fam in ("sersic", "planted", "stamps"):
        sf = SelectionFunction.load(rd.selection_function(fam))
        inj = read_injections(run, fam, tag)
        stamps = inj["stamp"].to_numpy() if fam == "stamps" else None    # the library bootstrap: stamps only
        # the defaults: 10 true lenses per merged bin, seed 0, 1000 bootstrap replicates
        _, want = closure_test(true, inj, sf.grid, ops, 3, 10, 1000, 0, stamps)
        assert (want["dof"] != closure_test(true, inj, sf.grid, ops, 3, 11, 1000, 0, stamps)[1]["dof"]).all()
        got = summ[summ["family"] == fam].reset_index(drop=True)
        for c in ("threshold", "c_true", "c_inj", "diff", "lo95", "hi95", "z", "chi2", "dof", "n_boot",
                  "library_bootstrap", "n_stamps"):
            assert got[c].tolist() == want[c].tolist(), c
        assert got["planted"].tolist() == [fam == "planted"] * len(got)
        assert got["library_bootstrap"].all() == (fam == "stamps")
    s = summ.set_index("family")
    assert (s.loc["sersic", "gate_probe_auc"] == 0.61).all() and (s.loc["sersic", "gate_p"] == 0.04).all()
    assert (s.loc["sersic", "gate_verdict"] == "NO-GO").all()
    assert s.loc["planted", "gate_probe_auc"].isna().all() and (s.loc["planted", "gate_verdict"] == "").all()
    assert set(per_bin["family"]) == {"sersic", "planted", "stamps"}
    run_closure(run, tmp_path / "true.parquet", out)                  # again into the same folder
    doc = read_doc(rd.operating_points, OPERATING_POINTS)
    write_doc(rd.operating_points, OPERATING_POINTS, {"points": [{"name": "p>=0.5"}]})
    with pytest.raises(ArtifactError, match=r"run/thresholds\.json: operating point lacks"):
        run_closure(run, tmp_path / "true.parquet", tmp_path / "c2")
    write_doc(rd.operating_points, OPERATING_POINTS, doc)


def test_completeness_table_rows_edges_and_empty_records_and_overall_by_hand(tmp_path):
    """Every cell gets a row per operating point, also cells (and whole tables) without injections; each row's
    edges are its cell's; the index is 0..N-1; overall() sums k and n per threshold with Jeffreys limits; the
    FITS copy carries the family and a pointer to the metadata; a bad operating point names the selection
    function."""
    from astropy.io import fits

    from lensaudit.artifacts import ArtifactError
    from lensaudit.selection.function import VALUE_COLUMNS, completeness_table
    from lensaudit.selection.intervals import completeness_columns

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.8)),
                           depth=AxisSpec(edges=(23.0, 24.0)), arc_mag=AxisSpec(edges=(19.0, 21.0, 23.0))))
    ops = [OperatingPoint.fixed(0.5), OperatingPoint.fixed(0.8)]
    recs = pd.DataFrame({"cell": [0, 0, 0, 1, 1], "probability": [0.9, 0.6, 0.1, 0.95, 0.2]})
    t = completeness_table(recs, grid, ops, 2)
    assert t.index.equals(pd.RangeIndex(8)) and t["cell"].tolist() == [0, 1, 2, 3] * 2
    assert t["n"].tolist() == [3, 2, 0, 0] * 2 and t["k"].tolist() == [2, 1, 0, 0, 1, 1, 0, 0]
    ti, ai = np.unravel_index(t["cell"].to_numpy(), grid.shape)[0], np.unravel_index(t["cell"].to_numpy(), grid.shape)[3]
    np.testing.assert_array_equal(t["theta_e_hi"], grid.edges["theta_e"][ti + 1])
    np.testing.assert_array_equal(t["arc_mag_hi"], grid.edges["arc_mag"][ai + 1])
    np.testing.assert_array_equal(t["arc_mag_lo"], grid.edges["arc_mag"][ai])
    empty = completeness_table(recs.iloc[:0], grid, ops, 2)
    assert len(empty) == 8 and (empty["n"] == 0).all() and (empty["k"] == 0).all()
    assert empty["completeness"].isna().all()
    meta = {"edges": {a: e.tolist() for a, e in grid.edges.items()}, "thresholds": [op.to_dict() for op in ops],
            "family": "sersic", "notes": "x" * 100}
    sf = SelectionFunction(t, meta)
    both = sf.overall()
    assert list(both) == ["p>=0.5", "p>=0.8"] and list(sf.overall("p>=0.8")) == ["p>=0.8"]
    for th, k in (("p>=0.5", 3), ("p>=0.8", 2)):
        want = completeness_columns(k, 5, 1)
        assert both[th]["k"] == k and both[th]["n"] == 5
        assert both[th] == pytest.approx({"k": k, "n": 5, **{c: float(want[c]) for c in VALUE_COLUMNS}})
    assert sf.overall("p>=0.8")["p>=0.8"] == both["p>=0.8"]
    sf.save_fits(tmp_path / "a.fits")
    hdr = fits.getheader(tmp_path / "a.fits", 1)
    assert hdr["FAMILY"] == "sersic" and hdr["LA_META"] == json.dumps(meta)[:60]
    SelectionFunction(t, {k: v for k, v in meta.items() if k != "family"}).save_fits(tmp_path / "b.fits")
    assert fits.getheader(tmp_path / "b.fits", 1)["FAMILY"] == ""
    with pytest.raises(ArtifactError, match="^selection function: operating point lacks"):
        SelectionFunction(t, {**meta, "thresholds": [{"name": "p>=0.5"}]})


def test_host_noise_cache_is_reused_only_for_the_same_hosts_and_store_and_never_unpickles(tmp_path, monkeypatch):
    """The hosts' pixel noise is measured once per (hosts, store contents) and read back after; other hosts or
    another store measure again; an unreadable or pickled cache is measured again, never unpickled."""
    from types import SimpleNamespace

    import lensaudit.inject.engine as engine
    from lensaudit.selection.run import _host_stats

    calls = []
    real = engine.host_noise
    monkeypatch.setattr(engine, "host_noise", lambda cut: calls.append(len(cut)) or real(cut))
    rng = np.random.default_rng(0)
    pix = {f"h{i}": rng.normal(0, 0.01 * (i + 1), (3, 101, 101)).astype(np.float32) for i in range(4)}

    class Store:
        def __init__(self, fp):
            self.fp = fp

        def fingerprint(self):
            return self.fp

        def get(self, ids):
            return np.stack([pix[i] for i in ids])

    rd = SimpleNamespace(host_noise=tmp_path / "host_noise.npz")
    hosts = pd.DataFrame({"id": ["h0", "h1", "h2"]})
    sig, rho = _host_stats(hosts, Store("a"), rd)
    assert calls == [3] and sig.shape == rho.shape == (3, 3)
    np.testing.assert_allclose(sig[:, 1], [0.01, 0.02, 0.03], rtol=0.1)
    again = _host_stats(hosts, Store("a"), rd)                        # read back: not measured
    assert calls == [3]
    np.testing.assert_array_equal(again[0], sig) and np.testing.assert_array_equal(again[1], rho)
    _host_stats(pd.DataFrame({"id": ["h0", "h1", "h3"]}), Store("a"), rd)     # other hosts
    assert calls == [3, 3]
    _host_stats(pd.DataFrame({"id": ["h0", "h1", "h3"]}), Store("b"), rd)     # another store
    assert calls == [3, 3, 3]
    with open(rd.host_noise, "wb") as fh:                             # a cache holding a pickled object array
        np.savez(fh, ids=np.array(["h0", "h1", "h3"], dtype=object), sigma=np.zeros((3, 3)), rho=np.zeros((3, 3)),
                 store=np.str_("b"))
    fresh = _host_stats(pd.DataFrame({"id": ["h0", "h1", "h3"]}), Store("b"), rd)
    assert calls == [3, 3, 3, 3] and (fresh[0] > 0).all()


def test_jeffreys_interval_refuses_bad_levels_and_counts_and_is_undefined_without_trials():
    from lensaudit.selection.intervals import jeffreys_interval

    for level in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="outside"):
            jeffreys_interval(1, 2, level)
    for k, n in ((-1, 3), (4, 3)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            jeffreys_interval(k, n)
    lo, hi = jeffreys_interval(np.array([0, 0, 2]), np.array([0, 3, 3]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and lo[1] == 0.0 and 0 < hi[1] < 1 and 0 < lo[2] < hi[2] < 1


def test_completeness_table_of_no_records_at_all_and_overall_of_a_single_injection():
    from lensaudit.selection.function import completeness_table

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.8)),
                           depth=AxisSpec(edges=(23.0, 24.0)), arc_mag=AxisSpec(edges=(19.0, 23.0))))
    ops = [OperatingPoint.fixed(0.5)]
    t = completeness_table(pd.DataFrame(), grid, ops, 1)             # a family without a single injection
    assert t["n"].tolist() == [0, 0] and t["k"].tolist() == [0, 0]
    one = completeness_table(pd.DataFrame({"cell": [1], "probability": [0.9]}), grid, ops, 1)
    meta = {"edges": {a: e.tolist() for a, e in grid.edges.items()}, "thresholds": [op.to_dict() for op in ops]}
    assert SelectionFunction(one, meta).overall()["p>=0.5"]["completeness"] == 1.0


# ---------------------------------------------------------------- the FPR negatives and the run's input keys
class _FakeStore:
    """A store whose cutout ``k`` is filled with the float k (the id's number), without files: what
    ``_negative_scores`` and ``input_fingerprints`` read of a store."""

    def __init__(self, ids):
        self._ids = np.asarray(ids, dtype=object)
        self.asked = []

    def ids(self):
        return self._ids

    def get(self, ids):
        self.asked.append(len(ids))
        return np.stack([np.full((3, 2, 2), float(str(i)[1:]), np.float32) for i in ids])

    def fingerprint(self):
        return "store-fingerprint-123"


def _fpr_manifest(n_neg: int) -> pd.DataFrame:
    rows = [{"id": f"n{k}", "split": "val" if k % 2 else "test", "label": 0} for k in range(n_neg)]
    rows += [{"id": f"n{100000 + k}", "split": "train", "label": 0} for k in range(7)]        # not audited
    rows += [{"id": f"n{200000 + k}", "split": "val", "label": 1} for k in range(5)]          # lenses
    return pd.DataFrame(rows)


def test_fpr_negatives_are_the_audited_splits_negatives_scored_in_batches_of_4096_and_read_from_a_scores_file(
        tmp_path):
    from lensaudit.selection.run import _negative_scores

    n = 5000                                            # two batches: 4096 and 904
    man = _fpr_manifest(n)
    store = _FakeStore([f"n{k}" for k in range(n) if k != 17] + ["n100001", "n200002"])  # n17 has no cutout
    flags, seen = [], []

    def scorer(x, features, ids):
        flags.append(features)
        seen.extend(ids)
        return (x[:, 0, 0, 0].astype(np.float64) / 1000.0 - 2.5, None)

    cfg = SelectionConfig(checkpoint="c", manifest="m", store="s", out="o")
    got = _negative_scores(cfg, man, store, scorer)
    want_ids = [k for k in range(n) if k != 17]
    lg = np.array(want_ids, float) / 1000.0 - 2.5
    np.testing.assert_allclose(got, 1.0 / (1.0 + np.exp(-lg)), rtol=1e-12)   # sigmoid, in manifest order
    assert store.asked == [4096, n - 1 - 4096] and flags == [False, False]    # no features asked for
    assert seen == [f"negative:n{k}" for k in want_ids]                      # the exchange's ids, in the same order
    with pytest.raises(InputError, match="no negative of splits"):
        _negative_scores(cfg, man, _FakeStore(["n100001", "n200002"]), scorer)

    # a scores file: merged on id; lenses, training negatives and rows of other objects ignored; only id and
    # probability read (a logit that overflowed to inf beside probability 1 is not this stage's business)
    ids = [f"n{k}" for k in range(0, n, 3)] + ["n100002", "n200001", "x9"]
    prob = np.linspace(0.0, 1.0, len(ids)).astype(np.float32)
    logit = np.where(prob >= 1.0, np.inf, 0.0)
    pd.DataFrame({"id": ids, "probability": prob, "logit": logit}).to_parquet(tmp_path / "neg.parquet")
    cfg = SelectionConfig(checkpoint="c", manifest="m", store="s", out="o",
                          negatives_predictions=str(tmp_path / "neg.parquet"))
    got = _negative_scores(cfg, man, store, scorer)
    keep = [i for i, s in enumerate(ids) if s.startswith("n") and int(s[1:]) < n]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, prob[keep].astype(np.float64))
    pd.DataFrame({"id": ["n100002", "n200001"], "probability": [0.1, 0.2]}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(InputError, match="none.parquet: no score for a negative of splits"):
        _negative_scores(cfg.model_copy(update={"negatives_predictions": str(tmp_path / "none.parquet")}),
                         man, store, scorer)


def test_input_fingerprints_key_every_file_by_contents_and_each_stamp_family_by_library_and_half(tmp_path):
    from lensaudit.selection.run import input_fingerprints
    from lensaudit.utils.io import sha256_file

    files = {}
    for name in ("ck.pt", "man.parquet", "neg.parquet", "twin.pt", "libA.fits", "libB.fits"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode() * 3)
    cfg = SelectionConfig(checkpoint=str(files["ck.pt"]), manifest=str(files["man.parquet"]), store="s", out="o",
                          negatives_predictions=str(files["neg.parquet"]),
                          extra_checkpoints={"twin": str(files["twin.pt"])},
                          families=[{"name": "half", "kind": "stamps", "stamp_library": f"{files['libA.fits']}:B"},
                                    {"name": "whole", "kind": "stamps", "stamp_library": str(files["libB.fits"])},
                                    {"name": "sersic", "kind": "sersic"}])
    got = input_fingerprints(cfg, _FakeStore([]))
    sha = {k: sha256_file(v) for k, v in files.items()}
    assert got == {"checkpoint": sha["ck.pt"], "manifest": sha["man.parquet"], "negatives_predictions": sha["neg.parquet"],
                   "extra:twin": sha["twin.pt"], "stamp_library:half": sha["libA.fits"],
                   "stamp_library:whole": sha["libB.fits"], "stamp_half:half": "B", "stamp_half:whole": "all",
                   "store": "store-fingerprint-123"}


def test_a_selection_run_injects_with_its_engine_settings(small_run, tmp_path):
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.run import run_selection

    fam = [{"name": "sersic", "kind": "sersic"}]
    run_selection(_sel_cfg(small_run, tmp_path / "a", families=fam))
    run_selection(_sel_cfg(small_run, tmp_path / "b", families=fam, engine={"shot_noise": False,
                                                                            "noise_correlation": "none"}))
    a = read_injections(tmp_path / "a", "sersic").sort_values("index")
    b = read_injections(tmp_path / "b", "sersic").sort_values("index")
    np.testing.assert_array_equal(a["theta_e"], b["theta_e"])              # the same draws ...
    assert not np.allclose(a["probability"], b["probability"], rtol=0, atol=1e-7)   # ... injected without arc noise


def test_a_selection_run_keeps_injections_on_host_row_0_and_passes_each_hosts_own_noise(small_run, tmp_path,
                                                                                        monkeypatch):
    """A cell whose only host is the first row of the host table gets all its injections (none dropped as
    'no host'), and the engine receives each host's measured (sigma, rho), in that order."""
    import lensaudit.selection.run as sr
    from lensaudit.inject.engine import InjectionEngine, host_noise
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.hosts import select_hosts

    d = small_run
    m = pd.read_parquet(d / "manifest.parquet")
    from lensaudit.cutouts import CutoutStore
    hosts = select_hosts(m, ("val", "test"), CutoutStore(d / "store").ids())
    p0 = float(hosts["host_psfsize_r"].iat[0])
    others = hosts["host_psfsize_r"].to_numpy()[1:]
    lo = max([p for p in others if p < p0], default=p0 - 0.1)
    assert not np.any((others > (lo + p0) / 2) & (others <= p0))                 # row 0 alone in its PSF bin
    edges = [(lo + p0) / 2, float(np.nextafter(p0, np.inf))]
    seen = []
    real = InjectionEngine.inject

    def spy(self, cut, fw, params, host_stats=None):
        seen.append((cut.copy(), host_stats))
        return real(self, cut, fw, params, host_stats=host_stats)

    monkeypatch.setattr(InjectionEngine, "inject", spy)
    cfg = _sel_cfg(d, tmp_path / "one", families=[{"name": "sersic", "kind": "sersic"}],
                   grid={"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": edges},
                         "depth": {"edges": [23.0, 25.0]}, "arc_mag": {"edges": [19.0, 25.0]}}, n_per_cell=3)
    sr.run_selection(cfg)
    recs = read_injections(tmp_path / "one", "sersic")
    assert len(recs) == 2 * 3 and set(recs["host_id"]) == {hosts["id"].iat[0]}   # 2 cells x 3, all on row 0
    assert seen
    for cut, (sig, rho) in seen:
        s, r = host_noise(cut)
        np.testing.assert_allclose(sig, s, rtol=1e-6)
        np.testing.assert_allclose(rho, r, rtol=1e-6, atol=1e-9)


def test_a_selection_run_records_its_summary_provenance_and_selection_function_metadata(small_run, tmp_path):
    """What a reader of a run finds besides the tables: the summary (hosts, cells, hosts left out, per family
    injections, seconds and marginal completeness), each selection function's metadata (config tag, priors and
    engine as JSON, the checkpoint, n per cell), the FITS copy, run_info.json (config, tag, seed, config path)
    and marginals binned on the grid's own edges."""
    import json

    from lensaudit.artifacts.layout import SelectionRunDir
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.run import run_selection

    cfg = _sel_cfg(small_run, tmp_path / "s", families=[{"name": "sersic", "kind": "sersic"}],
                   grid={"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": [0.9, 1.8]},
                         "depth": {"edges": [23.0, 25.0]}, "arc_mag": {"edges": [19.0, 21.0, 25.0]}})
    s = run_selection(cfg, config_path="given.yaml")
    out = tmp_path / "s"
    rd = SelectionRunDir(out)
    assert s["out"] == str(out) and s["cells"] == 4 and s["cells_without_hosts"] == 0 and s["n_hosts"] > 0
    assert all(set(v) == {"n", "ids"} and v["n"] >= len(v["ids"]) for v in s["hosts_left_out"].values())
    fam = s["families"]["sersic"]
    assert fam["n_injections"] == 24 and fam["seconds"] > 0 and set(fam) == {"n_injections", "seconds", "marginal"}
    sf = SelectionFunction.load(rd.selection_function("sersic"))
    assert fam["marginal"] == sf.overall()
    assert s["figures"] and all((rd.figures / f).exists() for f in s["figures"])
    assert json.loads(rd.summary.read_text())["config_tag"] == s["config_tag"]
    m = sf.meta
    assert m["family"] == "sersic" and m["kind"] == "sersic" and m["n_per_cell"] == 6
    assert m["checkpoint"] == cfg.checkpoint and m["config_tag"] == s["config_tag"]
    assert m["priors"] == json.loads(cfg.priors.model_dump_json()) and m["engine"] == json.loads(
        cfg.engine.model_dump_json())
    assert rd.selection_fits("sersic").exists()
    ri = json.loads(rd.run_info.read_text())
    assert ri["config"] == json.loads(cfg.model_dump_json()) and ri["config_sha256"] == s["config_tag"]
    assert ri["seeds"] == {"selection": cfg.seed} and ri["config_path"] == "given.yaml"
    marg = pd.read_parquet(rd.marginals)
    te = marg[(marg["quantity"] == "theta_e")]
    assert sorted(set(zip(te["lo"], te["hi"], strict=True))) == [(0.5, 1.5), (1.5, 3.0)]   # the grid's edges
    recs = read_injections(out, "sersic", features=True)
    assert recs["arc_mag_r"].between(19.0, 25.0).all() and recs["host_id"].notna().all()
    assert {"host_psfsize_g", "host_psfsize_r", "host_psfsize_z"} <= set(recs.columns)
    # the score as the model gave it (logit) beside its probability; the gate's features stored as float32
    np.testing.assert_allclose(recs["probability"], 1.0 / (1.0 + np.exp(-recs["logit"].to_numpy(float))), rtol=1e-6)
    assert recs["logit"].abs().max() > 0
    assert all(np.asarray(f).dtype == np.float32 and np.asarray(f).size > 0 for f in recs["features"])


def test_a_selection_run_scales_arcs_to_the_grids_lensed_magnitude_whatever_the_priors_brightness(small_run, tmp_path):
    """The grid's arc_mag axis is the lensed magnitude: a config whose priors say brightness 'source' still
    gets arcs scaled to a lensed magnitude inside their cell (the run overrides it), the same draws as 'lensed'."""
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.run import run_selection

    fam = [{"name": "sersic", "kind": "sersic"}]
    run_selection(_sel_cfg(small_run, tmp_path / "a", families=fam))
    run_selection(_sel_cfg(small_run, tmp_path / "b", families=fam, priors={"brightness": "source"}))
    a = read_injections(tmp_path / "a", "sersic").sort_values("index").reset_index(drop=True)
    b = read_injections(tmp_path / "b", "sersic").sort_values("index").reset_index(drop=True)
    np.testing.assert_allclose(b["arc_mag_r"], a["arc_mag_r"], rtol=0, atol=1e-9)
    edges = np.array([19.0, 21.0, 25.0])
    assert (np.searchsorted(edges, b["arc_mag_r"], side="right") - 1 == b["i_arc_mag"]).all()


def test_a_selection_run_tags_extra_checkpoints_and_requires_its_manifest_columns(small_run, tmp_path, monkeypatch):
    """The tag's config part names extra checkpoints only when there are some (their paths join the tag beside
    their contents); a manifest without split or label is refused by name before any host is read."""
    import lensaudit.selection.run as sr
    from lensaudit.artifacts.manifest import ManifestError

    class _Stop(Exception):
        pass

    seen = []
    real_sha = sr.sha256_json
    monkeypatch.setattr(sr, "sha256_json", lambda d: seen.append(d) or real_sha(d))
    monkeypatch.setattr(sr, "read_manifest", lambda *a, **k: (_ for _ in ()).throw(_Stop()))   # right after the tag
    ck = str(small_run / "ck.pt")
    for extra in ({}, {"twin": ck}):
        with pytest.raises(_Stop):
            sr.run_selection(_sel_cfg(small_run, tmp_path / f"t{len(extra)}", extra_checkpoints=extra))
    assert "extra_checkpoints" not in seen[0]["config"] and seen[1]["config"]["extra_checkpoints"] == {"twin": ck}
    assert "out" not in seen[0]["config"] and "device" not in seen[0]["config"] and "n_per_cell" in seen[0]["config"]
    monkeypatch.undo()
    m = pd.read_parquet(small_run / "manifest.parquet")
    for col in ("label", "split"):
        bad = tmp_path / f"no_{col}.parquet"
        m.drop(columns=col).to_parquet(bad)
        with pytest.raises(ManifestError, match=rf"missing required column\(s\) \['{col}'\]"):
            sr.run_selection(_sel_cfg(small_run, tmp_path / f"m_{col}", manifest=str(bad)))


def test_a_selection_run_summary_counts_empty_cells_caps_left_out_ids_and_times_each_family(small_run, tmp_path,
                                                                                            monkeypatch):
    """cells_without_hosts counts the grid's cells no host falls in; hosts left out list their first 20 ids beside
    the full count; each family's seconds is its own wall time (t_end - t_start) to 0.1 s."""
    import types

    import lensaudit.selection.run as sr

    real_screen = sr.screen_hosts

    def screen(hosts, cubes_of):
        kept, excluded = real_screen(hosts, cubes_of)
        return kept, {**excluded, "made_up": [f"x{k}" for k in range(30)]}

    clock = iter([100.0, 101.13])
    monkeypatch.setattr(sr, "screen_hosts", screen)
    monkeypatch.setattr(sr, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    m = pd.read_parquet(small_run / "manifest.parquet")
    lo = float(m["psfsize_r"].min()) if "psfsize_r" in m else 0.9
    cfg = _sel_cfg(small_run, tmp_path / "e", families=[{"name": "sersic", "kind": "sersic"}], n_per_cell=3,
                   grid={"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": [0.1, 0.2, 3.0]},
                         "depth": {"edges": [20.0, 30.0]}, "arc_mag": {"edges": [19.0, 25.0]}})
    assert lo > 0.2
    s = sr.run_selection(cfg)
    assert s["cells"] == 4 and s["cells_without_hosts"] == 1       # hosts fill PSF x depth cells: 0.1-0.2 arcsec is empty
    assert s["hosts_left_out"]["made_up"] == {"n": 30, "ids": [f"x{k}" for k in range(20)]}
    assert s["families"]["sersic"]["seconds"] == 1.1 and s["families"]["sersic"]["n_injections"] == 6


class _FakeScorer:
    """A stand-in model: whether it gives features, and the cache each call of ``score`` received."""

    def __init__(self, has_features: bool, path: str = "fake.onnx"):
        self.has_features, self.path, self.kind, self.caches = has_features, path, "onnx", []

    def score(self, cutouts, features=False, cache=None):
        self.caches.append(cache)
        return np.zeros(len(cutouts)), None


def test_the_scorer_loads_a_gate_reference_only_when_features_are_asked_of_a_model_without_them(monkeypatch):
    """``gate_reference`` is read only for ``features: true`` with a model that gives none: with features off, or a
    model with its own, no reference is loaded, whether one is set or not (the records then keep no reference)."""
    import lensaudit.scoring as scoring
    from lensaudit.selection.run import _Scorer

    loaded = []
    monkeypatch.setattr(scoring, "load_scorer", lambda p, *a, **k: loaded.append(p) or _FakeScorer(True, str(p)))
    for own, reference, features in [(False, None, False), (False, "ref.pt", False), (True, "ref.pt", True),
                                     (True, None, False)]:
        sc = _Scorer(None, "cpu", 8, exchanged=_FakeScorer(own), reference=reference, features=features)
        assert sc.reference is None and sc.features_from() == {"source": "model"}, (own, reference, features)
    assert loaded == []
    with pytest.raises(InputError, match="must be a lensaudit checkpoint"):   # asked for, and then loaded
        _Scorer(None, "cpu", 8, exchanged=_FakeScorer(False), reference="ref.pt", features=True)
    assert loaded == ["ref.pt"]


def test_extra_models_share_one_preprocessing_cache_per_set_of_cutouts():
    """Every extra model of one scoring call gets the same cache (members trained with one config preprocess the
    cutouts once), and each call starts a new one (another set of cutouts)."""
    from lensaudit.selection.run import _Scorer

    sc = object.__new__(_Scorer)
    sc.extra = {"a": _FakeScorer(False), "b": _FakeScorer(False)}
    cut = np.zeros((2, 3, 5, 5), np.float32)
    sc.extras(cut)
    sc.extras(cut)
    a, b = sc.extra["a"].caches, sc.extra["b"].caches
    assert all(isinstance(c, dict) for c in a + b)
    assert a[0] is b[0] and a[1] is b[1] and a[0] is not a[1]


def test_the_inputs_fingerprint_covers_the_spec_files_of_the_model_and_of_every_extra_model(tmp_path):
    """An ONNX or TorchScript model's spec (its bands, preprocessing, outputs) decides its scores as much as the model
    file: the spec beside the main model and beside each extra model keys the run's reuse."""
    from lensaudit.selection.run import input_fingerprints
    from lensaudit.utils.io import sha256_file

    for name in ("main.onnx", "main.spec.yaml", "twin.onnx", "twin.spec.yaml", "manifest.parquet"):
        (tmp_path / name).write_text(name)
    cfg = _sel_cfg(tmp_path, tmp_path / "out", checkpoint=str(tmp_path / "main.onnx"),
                   extra_checkpoints={"twin": str(tmp_path / "twin.onnx")})

    class _Store:
        @staticmethod
        def fingerprint() -> str:
            return "store"

    out = input_fingerprints(cfg, _Store())
    assert set(out) == {"checkpoint", "manifest", "store", "extra:twin", "spec:checkpoint", "spec:extra:twin"}
    assert out["spec:extra:twin"] == sha256_file(tmp_path / "twin.spec.yaml") != out["spec:checkpoint"]
