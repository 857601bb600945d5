"""The catalog stage functions called directly, row by row at every boundary, so a bug in the
shared functions is caught whatever engine runs them (the Spark-versus-local test cannot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from lensaudit.catalog import stages as st
from lensaudit.catalog.config import CatalogConfig
from lensaudit.catalog.spatial import assign_split, nearest_within, pixel_fraction, unit_vectors
from lensaudit.utils.hashing import hash64

ARCSEC = 1 / 3600


def _rows(n: int, **over) -> pd.DataFrame:
    """Rows that pass every cut: SER, z = 19.25, 5 exposures per band, no bits, 1 arcmin apart."""
    d = {"RELEASE": np.full(n, 10000, np.int16), "BRICKID": np.full(n, 7, np.int32),
         "BRICKNAME": np.full(n, "1510p010", object), "OBJID": np.arange(n, dtype=np.int32),
         "TYPE": np.full(n, "SER", object), "RA": 151.0 + np.arange(n) / 60.0, "DEC": np.full(n, 1.0),
         "EBV": np.full(n, 0.02, np.float32), "FLUX_G": np.full(n, 5.0, np.float32),
         "FLUX_R": np.full(n, 10.0, np.float32), "FLUX_Z": np.full(n, 20.0, np.float32),
         "GALDEPTH_R": np.full(n, 500.0, np.float32), "SHAPE_R": np.full(n, 1.0, np.float32),
         "SHAPE_E1": np.full(n, 0.1, np.float32), "SHAPE_E2": np.zeros(n, np.float32),
         "SERSIC": np.full(n, 1.5, np.float32), "MASKBITS": np.zeros(n, np.int32)}
    for b in "GRZ":
        d[f"NOBS_{b}"] = np.full(n, 5, np.int16)
        d[f"PSFSIZE_{b}"] = np.full(n, 1.2, np.float32)
        d[f"PSFDEPTH_{b}"] = np.full(n, 1000.0, np.float32)
    df = pd.DataFrame(d)
    for k, v in over.items():
        df[k] = v
    return df


NO_CANDS = pd.DataFrame({"name": ["far"], "ra": [10.0], "dec": [-10.0], "tier": ["A"], "zlens": [np.nan]})
CFG = CatalogConfig(sweeps=".", candidates=".")


def _flow(df, cands=NO_CANDS, cfg=CFG):
    neg, matches, flow = st.process_sweep(df, cfg, cands)
    return neg, matches, flow


@pytest.mark.parametrize("column, value, cut", [
    ("NOBS_G", 2, "nobs_grz"), ("NOBS_R", 2, "nobs_grz"), ("NOBS_Z", 2, "nobs_grz"),
    ("DEC", -18.0, "footprint_dec"), ("DEC", 32.0, "footprint_dec"), ("DEC", -30.0, "footprint_dec"),
    ("FLUX_Z", 10.0, "mag_z"), ("FLUX_Z", 0.0, "mag_z"), ("FLUX_Z", -3.0, "mag_z"),
    ("TYPE", "PSF", "type"), ("TYPE", "EXP", "type"), ("TYPE", "DUP", "type"),
    ("MASKBITS", 1 << 1, "maskbits"), ("MASKBITS", 1 << 5, "maskbits"), ("MASKBITS", 1 << 6, "maskbits"),
    ("MASKBITS", 1 << 7, "maskbits"), ("MASKBITS", 1 << 11, "maskbits"), ("MASKBITS", 1 << 12, "maskbits"),
    ("MASKBITS", 1 << 13, "maskbits"), ("RA", np.nan, "bad_coordinates"), ("RA", 360.0, "bad_coordinates"),
    ("DEC", 90.5, "bad_coordinates"), ("RA", -0.1, "bad_coordinates"),
])
def test_each_cut_alone_removes_exactly_its_row(column, value, cut):
    df = _rows(5)
    df.loc[2, column] = value
    neg, _, flow = _flow(df)
    assert flow[cut] == 1 and flow["rows_in"] == 5 and flow["rows_eligible"] == 4
    assert sum(flow[c] for c in st.CUT_ORDER) == 1
    assert "1510p010_2" not in set(neg["id"])


@pytest.mark.parametrize("column, value", [
    ("NOBS_G", 3), ("NOBS_R", 3), ("NOBS_Z", 3), ("DEC", -17.999), ("DEC", 31.999), ("FLUX_Z", 10.001),
    ("TYPE", "DEV"), ("TYPE", "REX"), ("MASKBITS", 1 << 0), ("MASKBITS", 1 << 2), ("MASKBITS", 1 << 8),
    ("MASKBITS", 1 << 16), ("RA", 0.0), ("RA", 359.999),
])
def test_rows_just_inside_every_boundary_are_kept(column, value):
    df = _rows(5)
    df.loc[2, column] = value
    neg, _, flow = _flow(df)
    assert flow["rows_eligible"] == 5, flow
    assert "1510p010_2" in set(neg["id"])


def test_cuts_are_counted_in_order_without_double_counting():
    df = _rows(4)
    df.loc[0, ["NOBS_G", "TYPE"]] = [1, "PSF"]        # fails nobs first, and type: counted once, as nobs
    df.loc[1, ["DEC", "MASKBITS"]] = [40.0, 1 << 1]   # footprint first
    _, _, flow = _flow(df)
    assert (flow["nobs_grz"], flow["footprint_dec"], flow["type"], flow["maskbits"]) == (1, 1, 0, 0)
    assert list(flow) == ["rows_in", *st.CUT_ORDER, "rows_eligible"]


def test_bad_coordinates_error_names_the_rows():
    cfg = CatalogConfig(sweeps=".", candidates=".", on_bad_rows="error")
    df = _rows(3)
    df.loc[1, "DEC"] = np.nan
    with pytest.raises(st.CatalogInputError, match=r"1 row\(s\) with NaN or out-of-range RA/DEC.*1510p010_1"):
        st.process_sweep(df, cfg, NO_CANDS, source="sweep X")


def test_exclusion_radius_and_match_radius_boundaries():
    df = _rows(4)
    cands = pd.DataFrame({"name": ["c"], "ra": [151.0], "dec": [1.0], "tier": ["A"], "zlens": [0.5]})
    df.loc[0, ["RA", "DEC"]] = [151.0, 1.0 + 0.99 * ARCSEC]     # matched (inside 1") and excluded
    df.loc[1, ["RA", "DEC"]] = [151.0, 1.0 + 10.9 * ARCSEC]     # excluded, not matched
    df.loc[2, ["RA", "DEC"]] = [151.0, 1.0 + 11.1 * ARCSEC]     # kept
    neg, matches, flow = _flow(df, cands)
    assert flow["near_candidate"] == 2 and set(neg["id"]) == {"1510p010_2", "1510p010_3"}
    assert matches["id"].tolist() == ["1510p010_0"] and matches["cand_idx"].tolist() == [0]
    assert matches["match_sep_arcsec"].iloc[0] == pytest.approx(0.99, abs=1e-3)


def test_derived_columns_of_a_row():
    df = _rows(2, NOBS_Z=np.array([7, 11], np.int16))
    neg, _, _ = _flow(df)
    assert neg["id"].tolist() == ["1510p010_0", "1510p010_1"]
    assert neg["nobs_z_bin"].tolist() == ["6-10", "11+"]
    want = hash64(np.array([10000, 10000]), np.array([7, 7]), np.array([0, 1]), CFG.sampling.seed).view(np.int64)
    np.testing.assert_array_equal(neg["order_hash"].to_numpy(), want)
    assert neg["psfsize_r"].dtype == np.float32 and neg["ra"].dtype == np.float64


@pytest.mark.parametrize("nobs, label", [(0, "<3"), (2, "<3"), (3, "3-5"), (5, "3-5"), (6, "6-10"), (10, "6-10"),
                                         (11, "11+"), (40, "11+")])
def test_nobs_bin_edges(nobs, label):
    assert st.nobs_z_bin(np.array([nobs]), (3, 6, 11))[0] == label
    assert st.nobs_bin_labels((3, 6, 11)) == ["<3", "3-5", "6-10", "11+"]


@pytest.mark.parametrize("over, category", [
    ({"TYPE": "DEV", "FLUX_R": 5.0}, "ring"), ({"TYPE": "DEV", "FLUX_R": 4.99}, ""),
    ({"TYPE": "SER", "SERSIC": 4.0, "FLUX_R": 6.0}, "ring"), ({"TYPE": "SER", "SERSIC": 3.99, "FLUX_R": 6.0}, ""),
    ({"SHAPE_E1": 0.5, "SHAPE_R": 0.6}, "edge_on"), ({"SHAPE_E1": 0.49, "SHAPE_R": 0.6}, ""),
    ({"SHAPE_E1": 0.3, "SHAPE_E2": 0.4, "SHAPE_R": 0.6}, "edge_on"), ({"SHAPE_E1": 0.5, "SHAPE_R": 0.59}, ""),
    ({"FLUX_G": 10.0 * 10 ** (-0.16), "FLUX_R": 10.0}, "blue_clumpy"),       # g - r = 0.40, r = 20.0
    ({"FLUX_G": 10.0 * 10 ** (-0.165), "FLUX_R": 10.0}, ""),                  # g - r = 0.4125
    ({"SHAPE_R": 2.0, "FLUX_R": 3.0}, "large_galaxy"), ({"SHAPE_R": 1.99, "FLUX_R": 3.0}, ""),
    ({"SHAPE_R": 2.0, "FLUX_R": 2.99}, ""),
    ({"TYPE": "DEV", "FLUX_R": 6.0, "SHAPE_E1": 0.6}, "ring"),              # the first in `order` wins
    ({"SHAPE_E1": 0.6, "SHAPE_R": 2.5, "FLUX_R": 4.0}, "edge_on"),
])
def test_confuser_proxy_boundaries_and_order(over, category):
    df = _rows(1, **over)
    assert st.confuser_category(df, CFG)[0] == category


def test_blue_clumpy_magnitude_limit():
    r205 = 10 ** (-0.4 * (20.5 - 22.5))
    assert st.confuser_category(_rows(1, FLUX_R=r205 * 1.001, FLUX_G=r205 * 1.001), CFG)[0] == "blue_clumpy"
    assert st.confuser_category(_rows(1, FLUX_R=r205 * 0.999, FLUX_G=r205 * 0.999), CFG)[0] == ""


def test_sampling_quotas_round_half_up_and_split_pools():
    pos = pd.DataFrame({"nobs_z_bin": ["3-5"] * 3 + ["6-10"], "type": ["SER"] * 3 + ["DEV"]})
    cfg = CatalogConfig(sweeps=".", candidates=".", sampling={"ratio": 2.5, "n2_fraction": 0.3})
    full = st.sampling_quotas(pos, cfg)
    assert list(full.columns) == [*st.STRATUM_KEY, "n_pos", "quota"] and list(full.index) == [0, 1, 2, 3]
    assert full["quota"].dtype == np.int64 and full["host_cell"].dtype == np.int16 and (full["host_cell"] == 0).all()
    # host cells given: quotas per cell
    cells = st.sampling_quotas(pos.assign(host_cell=np.int16([0, 1, 1, 0])), cfg)
    assert cells.groupby("host_cell")["quota"].sum().to_dict() == {0: 3 + 3, 1: 5}
    q = full.set_index(["nobs_z_bin", "type", "pool"])["quota"]
    # 3 x 2.5 = 7.5 -> 8 (N2: 8 x 0.3 = 2.4 -> 2, N1 6); 1 x 2.5 = 2.5 -> 3 (N2: 0.9 -> 1, N1 2)
    assert q[("3-5", "SER", "N1")] == 6 and q[("3-5", "SER", "N2")] == 2
    assert q[("6-10", "DEV", "N1")] == 2 and q[("6-10", "DEV", "N2")] == 1


def test_take_top_k_takes_the_first_rows_in_hash_order_per_stratum():
    neg = pd.DataFrame({"id": [f"o{i}" for i in range(8)], "nobs_z_bin": ["3-5"] * 8, "type": ["SER"] * 8,
                        "pool": ["N1"] * 5 + ["N2"] * 3, "order_hash": [5, -3, 9, 1, 1, 4, -8, 2], "host_cell": 0})
    quotas = pd.DataFrame({"nobs_z_bin": ["3-5", "3-5"], "type": ["SER", "SER"], "pool": ["N1", "N2"],
                           "quota": [3, 5], "host_cell": 0})
    got = st.take_top_k(neg, quotas)
    assert list(got.columns) == list(neg.columns) and list(got.index) == list(range(len(got)))
    # N1: hashes -3, 1 (o3), 1 (o4; tie broken by id); N2 takes all 3 (quota 5 > 3 available)
    assert sorted(got.loc[got.pool == "N1", "id"]) == ["o1", "o3", "o4"]
    assert sorted(got.loc[got.pool == "N2", "id"]) == ["o5", "o6", "o7"]
    sf = st.shortfalls(quotas, pd.DataFrame({"nobs_z_bin": ["3-5", "3-5"], "type": ["SER", "SER"], "host_cell": 0,
                                             "pool": ["N1", "N2"], "available": [5, 3]}), got)
    assert sf.set_index("pool")["shortfall"].to_dict() == {"N1": 0, "N2": 2}


def test_nearest_match_and_positive_resolution_break_ties_deterministically():
    m = pd.DataFrame({"cand_idx": [0, 0, 1, 2], "id": ["s1", "s2", "s1", "s3"],
                      "match_sep_arcsec": [0.5, 0.3, 0.2, 0.4], "order_hash": [1, 2, 3, 4]})
    near = st.nearest_matches(m)
    assert near.set_index("cand_idx")["id"].to_dict() == {0: "s2", 1: "s1", 2: "s3"}
    cands = pd.DataFrame({"name": ["A", "B", "C", "D"], "ra": [1.0, 2, 3, 4], "dec": [0.0] * 4, "zlens": [0.1] * 4,
                          "tier": ["A", "B", "A", "B"]})
    m2 = pd.DataFrame({"cand_idx": [0, 1, 2], "id": ["s1", "s1", "s3"], "match_sep_arcsec": [0.5, 0.2, 0.4],
                       "order_hash": [1, 1, 2]})
    pos, unmatched = st.resolve_positives(m2, cands, CFG)
    assert pos.set_index("id")["name"].to_dict() == {"s1": "B", "s3": "C"}   # the nearer candidate wins s1
    reasons = {u["name"]: u["reason"] for u in unmatched}
    assert reasons["A"] == "nearest source s1 is already matched to B" and "no Tractor source" in reasons["D"]
    # the whole frame and the whole report: columns, clean index, candidate fields carried over
    assert list(pos.columns) == ["cand_idx", "id", "match_sep_arcsec", "order_hash", "name", "zlens", "tier"]
    assert list(pos.index) == [0, 1] and list(pos["zlens"]) == [0.1, 0.1] and list(pos["tier"]) == ["B", "A"]
    assert unmatched == [
        {"name": "A", "ra": 1.0, "dec": 0.0, "reason": "nearest source s1 is already matched to B"},
        {"name": "D", "ra": 4.0, "dec": 0.0, "reason": f"no Tractor source within {CFG.positives.match_radius_arcsec} arcsec"}]
    # candidates with an index of their own (a filtered frame) are looked up by position
    pos2, un2 = st.resolve_positives(m2, cands.set_index(pd.Index([10, 11, 12, 13])), CFG)
    pd.testing.assert_frame_equal(pos2, pos)
    assert un2 == unmatched


def test_dedupe_ids_keeps_one_row_and_counts_the_rest():
    rows = pd.DataFrame({"id": ["a", "b", "a"], "ra": [1.0, 2.0, 0.5], "dec": [0.0, 0.0, 0.0], "order_hash": [1, 2, 3]})
    kept, n = st.dedupe_ids(rows, "negatives", "skip")
    assert n == 1 and kept.set_index("id")["ra"].to_dict() == {"a": 0.5, "b": 2.0}
    with pytest.raises(st.CatalogInputError, match="1 duplicate object id"):
        st.dedupe_ids(rows, "negatives", "error")


# ----------------------------------------------------------------------------- spatial
@settings(max_examples=50, deadline=None)
@given(pix=st_.lists(st_.integers(0, 12 * 128**2 - 1), min_size=1, max_size=30), seed=st_.integers(0, 2**31))
def test_splits_are_a_pure_function_of_pixel_and_seed(pix, seed):
    fr = [("train", 0.7), ("val", 0.15), ("test", 0.15)]
    a = assign_split(np.array(pix), seed, fr)
    b = np.array([assign_split(np.array([p]), seed, fr)[0] for p in pix])   # one at a time, any order
    np.testing.assert_array_equal(a, b)
    u = pixel_fraction(np.array(pix), seed)
    assert ((u >= 0) & (u < 1)).all()
    want = np.where(u < 0.7, "train", np.where(u < 0.85, "val", "test"))
    np.testing.assert_array_equal(a, want)


def test_nearest_within_radius_boundary_and_order():
    from scipy.spatial import cKDTree

    tree = cKDTree(unit_vectors(np.array([10.0, 10.0]), np.array([0.0, 3 * ARCSEC])))
    idx, sep = nearest_within(tree, np.array([10.0, 10.0]), np.array([1 * ARCSEC, 20 * ARCSEC]), 2.5, k=2)
    assert idx[0].tolist() == [0, 1] and sep[0] == pytest.approx([1.0, 2.0], abs=1e-6)
    assert idx[1].tolist() == [2, 2] and np.isinf(sep[1]).all()     # none within 2.5": index tree.n, inf


def test_host_edges_are_the_positives_inner_quantiles_and_only_when_matching():
    pos = pd.DataFrame({"mag_z": [18.0, 19.0, 20.0, 21.0, np.nan, 22.0], "g_r": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                        "shape_r": [0.5, 1.0, 1.5, 2.0, 2.5, np.inf]})
    off = CatalogConfig(sweeps=".", candidates=".")
    assert st.host_edges(pos, off) == {}
    on = CatalogConfig(sweeps=".", candidates=".", sampling={"host_match": {"enabled": True, "bins": 3}})
    e = st.host_edges(pos, on)
    assert list(e) == ["mag_z", "g_r", "shape_r"]
    # finite values only; numpy's linear quantiles at 1/3 and 2/3; repeated edges collapse
    np.testing.assert_allclose(e["mag_z"], np.quantile([18.0, 19.0, 20.0, 21.0, 22.0], [1 / 3, 2 / 3]), rtol=0, atol=0)
    assert e["g_r"] == [1.0] and all(isinstance(v, float) for v in e["shape_r"])
    np.testing.assert_allclose(e["shape_r"], np.quantile([0.5, 1.0, 1.5, 2.0, 2.5], [1 / 3, 2 / 3]))
    assert st.host_edges(pos.iloc[:0], on) == {}
    nan_only = CatalogConfig(sweeps=".", candidates=".", sampling={"host_match": {"enabled": True, "quantities": ["mag_z"]}})
    assert st.host_edges(pd.DataFrame({"mag_z": [np.nan]}), nan_only) == {"mag_z": []}


def test_host_cells_combine_quantities_with_strides():
    df = pd.DataFrame({"a": [0.0, 1.5, 2.5, np.nan, 1.0], "b": [5.0, 5.0, 9.0, 9.0, np.inf]})
    cells = st.assign_host_cells(df, {"a": [1.0, 2.0], "b": [7.0]})["host_cell"]
    # a-bin (right-closed edges: 1.0 falls in bin 1) + 3 x b-bin; NaN and inf in the last bin
    assert cells.dtype == np.int16 and list(cells) == [0 + 0, 1 + 0, 2 + 3, 2 + 3, 1 + 3]


def test_rebalance_moves_each_pools_shortfall_to_the_other_pool_as_far_as_it_can():
    key = dict(nobs_z_bin=["3-5"] * 4, type=["SER", "SER", "DEV", "DEV"], host_cell=0, pool=["N1", "N2"] * 2)
    quotas = pd.DataFrame({**key, "n_pos": 1, "quota": [8, 2, 8, 2]})
    # SER: N1 has 5 of 8 (short 3), N2 has 10 (spare 8) -> N1 5, N2 5; DEV: N1 short 6 but N2 spare 1 -> N2 3
    avail = pd.DataFrame({**key, "available": [5, 10, 2, 3]})
    got = st.rebalance_pools(quotas.astype({"host_cell": "int16"}), avail.astype({"host_cell": "int16"}))
    got = got.set_index(["type", "pool"])
    assert got["quota"].to_dict() == {("DEV", "N1"): 2, ("DEV", "N2"): 3, ("SER", "N1"): 5, ("SER", "N2"): 5}
    assert got["quota_protocol"].to_dict() == {("DEV", "N1"): 8, ("DEV", "N2"): 2, ("SER", "N1"): 8, ("SER", "N2"): 2}
    assert "available" not in got and list(got.index) == [("DEV", "N1"), ("DEV", "N2"), ("SER", "N1"), ("SER", "N2")]
    assert got["quota"].dtype == np.int64 and list(got.reset_index().columns) == [
        "type", "pool", "nobs_z_bin", "host_cell", "n_pos", "quota", "quota_protocol"]
    # host cells are strata of their own: a spare N2 row in cell 1 does not fill cell 0's N1
    cells = dict(nobs_z_bin=["3-5"] * 4, type="SER", host_cell=np.array([0, 0, 1, 1], np.int16), pool=["N1", "N2"] * 2)
    got = st.rebalance_pools(pd.DataFrame({**cells, "n_pos": 1, "quota": [4, 1, 4, 1]}),
                             pd.DataFrame({**cells, "available": [2, 1, 4, 6]}))
    assert list(got["quota"]) == [2, 1, 4, 1]
    # a stratum with no available rows at all gets quota 0 in both pools
    none = st.rebalance_pools(quotas.astype({"host_cell": "int16"}), avail.iloc[:0].astype({"host_cell": "int16"}))
    assert (none["quota"] == 0).all() and list(none["quota_protocol"]) == [8, 2, 8, 2]


def test_stratum_shortfalls_against_the_protocol_quota():
    short = pd.DataFrame({"nobs_z_bin": ["3-5"] * 4 + ["6-10"] * 2, "type": ["SER", "SER", "DEV", "DEV", "SER", "SER"],
                          "pool": ["N1", "N2"] * 3, "quota_protocol": [8, 2, 8, 2, 0, 0], "quota": [5, 5, 2, 3, 0, 0],
                          "taken": [5, 5, 2, 3, 0, 0]})
    g = st.stratum_shortfalls(short).set_index(["nobs_z_bin", "type"])
    assert g.loc[("3-5", "SER"), "wanted"] == 10 and g.loc[("3-5", "SER"), "short_fraction"] == 0.0
    assert g.loc[("3-5", "DEV"), "taken"] == 5 and g.loc[("3-5", "DEV"), "short_fraction"] == 0.5
    assert g.loc[("6-10", "SER"), "short_fraction"] == 0.0         # nothing wanted: not short
    assert list(g.index) == [("3-5", "DEV"), ("3-5", "SER"), ("6-10", "SER")]
    # without rebalancing the quota itself is what the protocol asked for; taking more is never negative short
    g2 = st.stratum_shortfalls(short.drop(columns="quota_protocol").assign(taken=[9, 5, 2, 3, 0, 0]))
    assert g2.set_index(["nobs_z_bin", "type"]).loc[("3-5", "SER"), "short_fraction"] == 0.0
    assert g2.set_index(["nobs_z_bin", "type"]).loc[("3-5", "DEV"), "short_fraction"] == 0.0


def test_host_cells_with_three_quantities_and_float32_edges_from_float32_columns():
    df = pd.DataFrame({"a": [0.5, 1.5, 0.5, 1.5], "b": [0.5, 0.5, 1.5, 1.5], "c": [0.5, 1.5, 1.5, 0.5]})
    cells = st.assign_host_cells(df, {"a": [1.0], "b": [1.0], "c": [1.0]})["host_cell"]
    assert list(cells) == [0, 1 + 0 + 4, 0 + 2 + 4, 1 + 2 + 0]     # strides 1, 2, 4
    # edges of a float32 column are quantiles of its values in float64 arithmetic
    pos = pd.DataFrame({"mag_z": np.float32([18.1, 19.3])})
    cfg = CatalogConfig(sweeps=".", candidates=".", sampling={"host_match": {"enabled": True, "quantities": ["mag_z"],
                                                                             "bins": 2}})
    want = (float(np.float32(18.1)) + float(np.float32(19.3))) / 2
    assert st.host_edges(pos, cfg) == {"mag_z": [want]}


def test_dedupe_nearest_and_empty_rows_return_clean_frames():
    rows = pd.DataFrame({"id": ["b", "a", "b"], "ra": [2.0, 1.0, 1.5], "dec": [0.0, 0.0, 0.0], "order_hash": [1, 2, 3]})
    kept, n = st.dedupe_ids(rows, "sweeps", "skip")
    assert n == 1 and list(kept.columns) == ["id", "ra", "dec", "order_hash"] and list(kept.index) == [0, 1]
    assert list(kept["id"]) == ["a", "b"] and kept.loc[1, "ra"] == 1.5            # the first of b by ra
    same, n = st.dedupe_ids(rows.iloc[:2], "sweeps", "skip")
    assert n == 0 and same is not None and len(same) == 2
    m = pd.DataFrame({"cand_idx": [1, 0, 1], "id": ["x", "y", "z"], "match_sep_arcsec": [0.4, 0.1, 0.2],
                      "order_hash": [0, 0, 0]})
    near = st.nearest_matches(m)
    assert list(near.columns) == list(m.columns) and list(near.index) == [0, 1] and list(near["id"]) == ["y", "z"]
    e = st.empty_rows()
    assert len(e) == 0 and list(e.columns) == list(st.ROW_COLUMNS)
    assert {c: str(t) for c, t in e.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype) for c, t in st.ROW_COLUMNS.items()}


def test_rows_carry_host_properties_ids_and_pixels_and_stay_quiet_on_zero_flux():
    import warnings

    from lensaudit.catalog.spatial import healpix_nested
    from lensaudit.survey.photometry import flux_to_mag

    df = _rows(3, FLUX_G=np.float32([5.0, 0.0, 2.0]), FLUX_R=np.float32([10.0, 0.0, 4.0]))
    cfg = CatalogConfig(sweeps=".", candidates=".")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # zero fluxes: inf - inf, silently NaN
        r = st._rows(df, cfg)
    want_gr = flux_to_mag(np.float64([5.0, 0.0, 2.0])) - flux_to_mag(np.float64([10.0, 0.0, 4.0]))
    np.testing.assert_allclose(r["g_r"].to_numpy()[[0, 2]], want_gr[[0, 2]], rtol=1e-6)   # stored float32
    assert np.isnan(r["g_r"].to_numpy()[1])
    np.testing.assert_allclose(r["mag_z"], flux_to_mag(np.full(3, 20.0)), rtol=1e-6)
    assert (r["host_cell"] == 0).all() and list(r["id"]) == ["1510p010_0", "1510p010_1", "1510p010_2"]
    np.testing.assert_array_equal(r["healpix"], healpix_nested(df["RA"], df["DEC"], cfg.splits.nside))
    labels = st.nobs_z_bin(np.array([1, 4, 50]), (3, 5, 10))
    assert labels.dtype == object
    # the object named in a bad-coordinate error: "sweep" unless the caller says which file
    with pytest.raises(st.CatalogInputError, match=r"^sweep: 1 row\(s\) with NaN"):
        st.process_sweep(_rows(2, RA=[151.0, np.nan]), cfg.model_copy(update={"on_bad_rows": "error"}), NO_CANDS)


def test_neighbour_indices_are_integers_and_pixel_fractions_keep_their_shape():
    from scipy.spatial import cKDTree

    tree = cKDTree(unit_vectors(np.array([151.0, 151.01]), np.array([1.0, 1.0])))
    i, sep = nearest_within(tree, np.array([151.0]), np.array([1.0]), 60.0)
    assert i.dtype == np.int64 and sep.dtype == np.float64 and i[0, 0] == 0 and sep[0, 0] == pytest.approx(0, abs=1e-9)
    pix = np.array([[5, 9], [9, 2]])
    f = pixel_fraction(pix, 3)
    assert f.shape == (2, 2) and f[0, 1] == f[1, 0] == pixel_fraction(np.array([9]), 3)[0]


def test_blue_clumpy_limits_are_inclusive_at_the_exact_computed_values_and_zero_flux_is_quiet():
    import warnings

    from lensaudit.survey.photometry import flux_to_mag

    df = _rows(2, FLUX_G=np.float32([7.0, 0.0]), FLUX_R=np.float32([10.0, 0.0]))
    mag_g, mag_r = flux_to_mag(df["FLUX_G"].to_numpy()), flux_to_mag(df["FLUX_R"].to_numpy(np.float64))
    gr, r = float(mag_g[0] - mag_r[0]), float(mag_r[0])
    at = CatalogConfig(sweeps=".", candidates=".", confusers={"blue_max_g_minus_r": gr, "blue_max_mag_r": r})
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no flux: inf - inf, quietly not a confuser
        assert list(st.confuser_category(df, at)) == ["blue_clumpy", ""]
    for over in ({"blue_max_g_minus_r": np.nextafter(gr, -np.inf)}, {"blue_max_mag_r": np.nextafter(r, -np.inf)}):
        below = CatalogConfig(sweeps=".", candidates=".", confusers={"blue_max_g_minus_r": gr, "blue_max_mag_r": r, **over})
        assert st.confuser_category(df, below)[0] == ""
