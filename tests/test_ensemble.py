"""Domain-specialised ensembles: domain filters (every object in exactly the domain its column says),
combination rules, diversity / selective / yield metrics against brute-force and scipy oracles, and a
small end-to-end run (members trained, reused on a re-run, tables consistent with their inputs)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import pearsonr, spearmanr

from lensaudit.config import ConfigError, validate_config
from lensaudit.ensemble import combine, metrics
from lensaudit.ensemble.config import DomainDef, EnsembleConfig
from lensaudit.ensemble.domains import (
    assign_all,
    assign_domain,
    domain_counts,
    member_name,
    own_member,
    resolve_cut,
)
from lensaudit.ensemble.selection import mcnemar_p
from lensaudit.errors import InputError

RNG = np.random.default_rng(5)


def _manifest(n: int = 300) -> pd.DataFrame:
    r = np.random.default_rng(1)
    return pd.DataFrame({
        "id": [f"o{i:04d}" for i in range(n)],
        "split": r.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2]),
        "label": r.integers(0, 2, n),
        "psfsize_r": np.where(r.random(n) < 0.05, np.nan, r.uniform(0.9, 2.1, n)),
        "nobs_z": r.integers(1, 12, n),
        "type": r.choice(["DEV", "SER", "REX", "EXP", "PSF"], n),
    })


# ----------------------------------------------------------------------------- domain filters
def test_median_split_puts_each_object_on_its_side_and_uses_the_training_split_only():
    m = _manifest()
    d = DomainDef(name="seeing", column="psfsize_r", split="median", labels=("good", "poor"))
    cut = resolve_cut(d, m)
    assert cut == pytest.approx(np.nanmedian(m.loc[m["split"] == "train", "psfsize_r"]))
    got = assign_domain(m, d, cut)
    x = m["psfsize_r"].to_numpy()
    for xi, g in zip(x, got, strict=True):
        if np.isnan(xi):
            assert pd.isna(g)
        else:
            assert g == ("good" if xi < cut else "poor")
    # moving only audited rows leaves the cut (and so the training rows' domains) unchanged
    m2 = m.copy()
    m2.loc[m2["split"] != "train", "psfsize_r"] = 5.0
    assert resolve_cut(d, m2) == cut


def test_fixed_cut_value_sits_in_the_upper_domain():
    m = pd.DataFrame({"id": ["a", "b", "c"], "split": "train", "label": 0, "psfsize_r": [1.19, 1.2, 1.21]})
    d = DomainDef(name="seeing", column="psfsize_r", split=1.2)
    assert assign_domain(m, d, resolve_cut(d, m)).tolist() == ["low", "high", "high"]


def test_edges_match_pandas_cut_with_closed_lower_edges():
    m = _manifest()
    d = DomainDef(name="nexp", column="nobs_z", edges=(1, 3, 5, float("inf")))
    got = assign_domain(m, d)
    ref = pd.cut(m["nobs_z"], [1, 3, 5, np.inf], right=False, labels=["1-3", "3-5", "5-inf"]).astype("string")
    assert got.fillna("none").tolist() == ref.fillna("none").tolist()
    # a value below the first edge is in no domain
    m.loc[0, "nobs_z"] = 0
    assert pd.isna(assign_domain(m, d).iloc[0])


def test_groups_assign_listed_values_and_leave_the_rest_out():
    m = _manifest()
    d = DomainDef(name="morph", column="type", groups={"ser_dev": ("SER", "DEV"), "rex": ("REX",)})
    got = assign_domain(m, d)
    for t, g in zip(m["type"], got, strict=True):
        assert (g == "ser_dev") if t in ("SER", "DEV") else (g == "rex") if t == "REX" else pd.isna(g)
    # padded FITS strings ("DEV ") still match
    m.loc[0, "type"] = "DEV "
    assert assign_domain(m, d).iloc[0] == "ser_dev"


def test_every_object_is_in_exactly_one_domain_or_none_per_definition():
    m = _manifest()
    defs = (DomainDef(name="seeing", column="psfsize_r", split="median"),
            DomainDef(name="morph", column="type", groups={"a": ("SER", "DEV"), "b": ("REX", "EXP")}),
            DomainDef(name="nexp", column="nobs_z", edges=(1, 4, 20)))
    frame, rules = assign_all(m, defs)
    assert rules["seeing"]["cut"] == pytest.approx(resolve_cut(defs[0], m))
    counts = domain_counts(m, frame, defs)
    for d in defs:  # the counts of a definition add up to every row once
        assert counts.loc[counts["definition"] == d.name, "n"].sum() == len(m)
    assert member_name("seeing", "5-inf") == "seeing-5-inf" and member_name("a b", "x/y") == "a_b-x_y"


@pytest.mark.parametrize("bad, msg", [
    ({"name": "x", "column": "c"}, "exactly one"),
    ({"name": "x", "column": "c", "split": 1.0, "edges": [0, 1]}, "exactly one"),
    ({"name": "x", "column": "c", "edges": [1, 1]}, "increasing"),
    ({"name": "x", "column": "c", "groups": {"a": ["S"], "b": ["S"]}}, "groups 'a' and 'b'"),
    ({"name": "x", "column": "c", "groups": {"a": ["S"]}}, "two or more"),
    ({"name": "x y", "column": "c", "split": 1.0}, "pattern"),
])
def test_bad_domain_definitions_are_refused_with_the_reason(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        validate_config(bad, DomainDef)


def test_missing_or_non_numeric_column_names_the_domain():
    m = _manifest()
    with pytest.raises(InputError, match="'seeing'.*no column 'psf'"):
        assign_domain(m, DomainDef(name="seeing", column="psf", split=1.0), 1.0)
    with pytest.raises(InputError, match="not numeric"):
        assign_domain(m, DomainDef(name="morph", column="type", split=1.0), 1.0)


def test_own_member_indexes_the_definitions_domains_in_order():
    d = DomainDef(name="morph", column="type", groups={"ser_dev": ("SER", "DEV"), "rex": ("REX",)})
    dom = assign_domain(pd.DataFrame({"type": ["REX", "DEV", "PSF", "SER"]}), d)
    assert own_member(dom, d).tolist() == [1, 0, -1, 0]


# ----------------------------------------------------------------------------- combination rules
def test_average_and_gate_against_hand_computed_values():
    p = np.array([[0.9, 0.1, 0.2], [0.2, 0.6, 0.4], [0.5, 0.5, 0.8]])
    np.testing.assert_allclose(combine.average(p), [0.4, 0.4, 0.6])
    g = combine.domain_gate(p, np.array([0, 1, -1]), 0.8)
    np.testing.assert_allclose(g, [0.8 * 0.9 + 0.2 * 0.15, 0.8 * 0.6 + 0.2 * 0.3, 0.6])
    np.testing.assert_allclose(combine.domain_gate(p, np.array([2, 2, 2]), 1.0), p[:, 2])  # weight 1: own only
    np.testing.assert_allclose(combine.domain_gate(p[:, :1], np.array([0, -1, 0]), 0.5), p[:, 0])
    # weight 1/m reduces the gate to the plain average
    np.testing.assert_allclose(combine.domain_gate(p, np.array([0, 1, 2]), 1 / 3), combine.average(p))
    np.testing.assert_allclose(combine.member_spread(p), p.var(axis=1))


@pytest.mark.parametrize("probs, own, w", [
    (np.array([[0.2, 1.2]]), np.array([0]), 0.8),
    (np.array([[0.2, np.nan]]), np.array([0]), 0.8),
    (np.array([[0.2, 0.3]]), np.array([2]), 0.8),
    (np.array([[0.2, 0.3]]), np.array([0, 1]), 0.8),
    (np.array([[0.2, 0.3]]), np.array([0]), 0.0),
])
def test_gate_refuses_bad_inputs(probs, own, w):
    with pytest.raises(InputError):
        combine.domain_gate(probs, own, w)


# ----------------------------------------------------------------------------- metrics
def test_correlations_match_scipy_and_their_interval_holds_the_value():
    x = RNG.normal(size=400)
    y = 0.6 * x + 0.8 * RNG.normal(size=400)
    c = metrics.correlations(x, y, 500, 3, "t")
    assert c["pearson"] == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert c["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    for k in ("pearson", "spearman"):
        assert c[f"{k}_lo95"] < c[k] < c[f"{k}_hi95"] and c[f"{k}_hi95"] - c[f"{k}_lo95"] < 0.25
    assert metrics.correlations(x, y, 500, 3, "t") == c  # seeded
    assert metrics.correlations(x, y, 500, 4, "t")["pearson_lo95"] != c["pearson_lo95"]


def test_pairwise_correlations_cover_every_pair_and_stratum():
    lg = pd.DataFrame(RNG.normal(size=(120, 3)), columns=["a", "b", "c"])
    strata = pd.Series(np.repeat(["s1", "s2", "tiny"], [60, 55, 5]))
    t = metrics.pairwise_correlations(lg, strata, n_boot=200, min_count=10)
    assert set(t["stratum"]) == {"all", "s1", "s2"}  # 'tiny' has too few rows
    assert len(t) == 3 * 3
    r = t[(t["stratum"] == "s2") & (t["member_a"] == "a") & (t["member_b"] == "c")].iloc[0]
    assert r["pearson"] == pytest.approx(pearsonr(lg["a"][60:115], lg["c"][60:115]).statistic)


def test_disagreement_against_brute_force():
    p = pd.DataFrame(RNG.random((200, 3)), columns=["a", "b", "c"])
    y = RNG.integers(0, 2, 200)
    t = metrics.disagreement_table(p, y, 0.5)
    det = p.to_numpy() >= 0.5
    brute = [len({bool(v) for v in row}) > 1 for row in det]
    row = t[(t["label"] == "all") & (t["pair"] == "all members")].iloc[0]
    assert row["k"] == sum(brute) and row["n"] == 200 and row["lo95"] < row["value"] < row["hi95"]
    lens = t[(t["label"] == "lens") & (t["pair"] == "all members")].iloc[0]
    assert lens["k"] == sum(b for b, yy in zip(brute, y, strict=True) if yy == 1)
    ab = t[t["pair"] == "a vs b"].iloc[0]
    assert ab["k"] == int((det[:, 0] != det[:, 1]).sum())


def test_selective_curve_against_brute_force():
    y = RNG.integers(0, 2, 50)
    s = RNG.random(50)
    u = np.round(RNG.random(50), 1)  # ties: the earlier row goes first
    t = metrics.selective_curve(y, s, u, 0.5, [0.0, 0.1, 0.5])
    for f, row in zip([0.0, 0.1, 0.5], t.itertuples(), strict=True):
        order = sorted(range(50), key=lambda i: (-u[i], i))
        kept = sorted(set(range(50)) - set(order[: int(f * 50)]))
        tp = sum(1 for i in kept if y[i] == 1 and s[i] >= 0.5)
        assert row.n_kept == len(kept)
        assert row.recall == pytest.approx(tp / sum(1 for i in kept if y[i] == 1))
        assert row.precision == pytest.approx(tp / sum(1 for i in kept if s[i] >= 0.5))
        assert row.lenses_set_aside == pytest.approx(sum(1 for i in order[: int(f * 50)] if y[i] == 1) / y.sum())


def test_top_k_yield_and_unique_finds():
    s = np.array([0.9, 0.8, 0.8, 0.1, 0.7, 0.2])
    assert metrics.top_k_mask(s, 2).tolist() == [True, True, False, False, False, False]  # tie: earlier row
    t = metrics.top_k_yield(s, {"lens": np.array([1, 0, 1, 1, 0, 0], bool)}, [1, 3, 10])
    assert t["k"].tolist() == [1, 3, 10] and t["found"].tolist() == [1, 2, 3]
    assert t["value"].tolist() == [1 / 3, 2 / 3, 1.0] and (t["n"] == 3).all()
    members = pd.DataFrame({"a": [0.9, 0.1, 0.1, 0.8, 0.1, 0.1], "b": [0.1, 0.1, 0.9, 0.8, 0.1, 0.1]})
    combo = np.array([0.9, 0.1, 0.8, 0.85, 0.1, 0.1])
    target = np.array([1, 0, 1, 1, 0, 0], bool)
    u = metrics.unique_finds(members, combo, target, 2)
    # combo's top 2: rows 0, 3 (both lenses); a's top 2: 0, 3; b's top 2: 2, 3
    assert u == {"k": 2, "targets_in_list": 2, "found_by_one_member": 1, "found_by_no_member": 0,
                 "only_a": 1, "only_b": 0}


def test_metrics_at_their_edges_empty_proportions_short_vectors_one_member_and_mismatched_lengths():
    from lensaudit.evaluate.metrics import wilson_interval

    assert metrics.proportion_row(3, 0)["n"] == 0 and np.isnan(metrics.proportion_row(0, 0)["value"])
    r = metrics.proportion_row(3, 8)
    assert (r["k"], r["n"], r["value"]) == (3, 8, 3 / 8)
    np.testing.assert_allclose([r["lo95"], r["hi95"]], np.ravel(wilson_interval(3, 8)))
    short = metrics.correlations([1.0, 2.0], [2.0, 1.0], 50, 0)
    assert short["n"] == 2 and all(np.isnan(short[k]) for k in ("pearson", "spearman_hi95"))
    flat = metrics.correlations(np.ones(10), np.arange(10.0), 50, 0)          # no spread: undefined, not an error
    assert np.isnan(flat["pearson"]) and np.isnan(flat["pearson_lo95"])
    with pytest.raises(InputError, match="two or more members"):
        metrics.pairwise_correlations(pd.DataFrame({"a": [0.1, 0.2]}))
    with pytest.raises(InputError, match="differ in length"):
        metrics.selective_curve([1, 0], [0.5, 0.5], [0.1], 0.5, [0.0])
    # unanimity counts a probability equal to the threshold as a detection
    assert metrics.unanimous(np.array([[0.5, 0.7], [0.49, 0.5], [0.1, 0.2]]), 0.5).tolist() == [True, False, True]
    # strata: per stratum and label, with 'none' for a missing stratum; pairs only overall
    p = pd.DataFrame({"a": [0.9, 0.1, 0.9, 0.1], "b": [0.9, 0.9, 0.1, 0.1]})
    t = metrics.disagreement_table(p, np.array([1, 1, 0, 0]), 0.5, pd.Series(["x", "x", None, "x"]))
    key = t.set_index(["stratum", "label", "pair"])
    assert key.loc[("x", "lens", "all members"), "k"] == 1 and key.loc[("x", "non-lens", "all members"), "n"] == 1
    assert key.loc[("none", "all", "all members"), "k"] == 1 and key.loc[("all", "all", "a vs b"), "k"] == 2
    assert metrics.set_aside_order(np.array([0.2, 0.9, 0.2, 0.5])).tolist() == [1, 3, 0, 2]


def test_combination_rules_at_their_boundaries_and_with_integer_inputs():
    # probabilities 0 and 1 are valid; a member table of one column returns floats even for integer input
    p = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(combine.average(p), [0.5, 0.5])
    one = combine.domain_gate(np.array([[1], [0]]), np.array([0, -1]), 0.8)
    assert one.dtype == np.float64 and one.tolist() == [1.0, 0.0]
    # 'own' may come as floats holding member indices (a Parquet column with -1 for none)
    np.testing.assert_allclose(combine.domain_gate(p, np.array([1.0, -1.0]), 0.75), [0.75 * 1.0 + 0.25 * 0.0, 0.5])
    for bad in (np.array([0.2, 0.3]), np.ones((2, 2, 2)) * 0.5, np.ones((2, 0))):
        with pytest.raises(InputError, match="must be \\(objects, members\\)"):
            combine.average(bad)
    with pytest.raises(InputError, match="member indices"):
        combine.domain_gate(p, np.array([-2, 0]), 0.5)
    for w in (1.5, 2.0, -0.1):
        with pytest.raises(InputError, match="must lie in"):
            combine.domain_gate(p, np.array([0, 1]), w)
    np.testing.assert_allclose(combine.domain_gate(p, np.array([0, 1]), 1.0), [0.0, 0.0])  # weight 1 is allowed


def test_own_member_is_an_integer_column():
    d = DomainDef(name="morph", column="type", groups={"ser_dev": ("SER", "DEV"), "rex": ("REX",)})
    out = own_member(assign_domain(pd.DataFrame({"type": ["PSF", "DEV", "REX"]}), d), d)
    assert out.dtype == np.int64 and out.tolist() == [-1, 0, 1]


def test_rankings_of_unsigned_counts_and_targets_given_as_numbers():
    # an uncertainty or score held as unsigned counts (members disagreeing, votes): ranked by value, not wrapped
    votes = np.array([1, 3, 2, 0], dtype=np.uint8)
    assert metrics.set_aside_order(votes).tolist() == [1, 2, 0, 3]
    assert metrics.top_k_mask(votes, 2).tolist() == [False, True, True, False]
    # targets as 0/1 floats (a Parquet column) count as booleans
    t = metrics.top_k_yield(np.array([0.9, 0.8, 0.1]), {"lens": np.array([1.0, 0.0, 1.0])}, [1, 3])
    assert t.columns.tolist() == ["k", "target", "found", "n", "value", "lo95", "hi95"]
    assert t["target"].tolist() == ["lens", "lens"] and t["found"].tolist() == [1, 2] and t["n"].tolist() == [2, 2]
    members = pd.DataFrame({"a": [0.9, 0.8, 0.1, 0.7], "b": [0.9, 0.1, 0.8, 0.1]})
    # the list's top 3: rows 0 (in both members' top 2), 1 (only a's), 3 (no member's); row 2 is not a target
    u = metrics.unique_finds(members, np.array([0.9, 0.8, 0.1, 0.7]), np.array([1.0, 1.0, 1.0, 1.0]), 3)
    assert u == {"k": 3, "targets_in_list": 3, "found_by_one_member": 1, "found_by_no_member": 0,
                 "only_a": 1, "only_b": 0}
    u2 = metrics.unique_finds(members, np.array([0.9, 0.8, 0.1, 0.7]), np.ones(4), 2)
    assert u2["found_by_one_member"] == 1 and u2["found_by_no_member"] == 0 and u2["targets_in_list"] == 2


def test_selective_curve_and_disagreement_tables_name_their_columns_and_strata():
    y, s, u = np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), np.array([0.1, 0.9, 0.2, 0.0])
    t = metrics.selective_curve(y, s, u, 0.5, [0.0, 0.25])
    assert t.columns.tolist() == ["set_aside", "n_set_aside", "n_kept", "recall", "recall_lo95", "recall_hi95",
                                  "precision", "precision_lo95", "precision_hi95", "lenses_set_aside"]
    from lensaudit.evaluate.metrics import wilson_interval
    assert t["n_set_aside"].tolist() == [0, 1] and t["recall"].tolist() == [0.5, 1.0]
    np.testing.assert_allclose(t[["recall_lo95", "recall_hi95"]].to_numpy()[1], np.ravel(wilson_interval(1, 1)))
    np.testing.assert_allclose(t[["precision_lo95", "precision_hi95"]].to_numpy()[0], np.ravel(wilson_interval(1, 2)))
    p = pd.DataFrame({"a": [0.9, 0.1, 0.9, 0.1], "b": [0.9, 0.9, 0.1, 0.1]})
    plain = metrics.disagreement_table(p, np.array([1, 1, 0, 0]), 0.5)
    assert plain["stratum"].tolist() == ["all"] * 4 and len(plain) == 4    # 3 label rows and one pair, once
    by = metrics.disagreement_table(p, np.array([1, 1, 0, 0]), 0.5, pd.Series(["x", "y", "x", "y"]))
    assert by["stratum"].tolist() == ["all"] * 3 + ["x"] * 3 + ["y"] * 3 + ["all"]
    key = by.set_index(["stratum", "label", "pair"])
    assert key.loc[("all", "all", "all members"), "n"] == 4 and key.loc[("all", "all", "all members"), "k"] == 2
    assert key.loc[("all", "lens", "all members"), "n"] == 2


def test_domains_of_a_hand_built_manifest_rules_and_counts_column_by_column():
    m = pd.DataFrame({"id": ["a", "b", "c", "d", "e", "f"], "split": ["fit", "fit", "fit", "val", "val", "fit"],
                      "label": [1, 0, 0, 1, 0, 0],
                      "psf": [1.0, 1.4, 2.0, -np.inf, 1.2, np.nan],
                      "nobs": pd.array([1, 3, None, 7, 9, 2], dtype="Int64"),      # nullable: a missing count
                      "type": ["DEV", "Rex", "PSF", "SER", "REX", "DEV"]},
                     index=[10, 11, 12, 13, 14, 15])                               # not 0..n-1
    defs = (DomainDef(name="seeing", column="psf", split="median", labels=("good", "poor")),
            DomainDef(name="cut", column="psf", split=1.3),
            DomainDef(name="nexp", column="nobs", edges=(1, 3, 8)),
            DomainDef(name="morph", column="type", groups={"Dev": ("DEV",), "rex": ("REX", "Rex")}))
    frame, rules = assign_all(m, defs, train_split="fit")
    assert rules == {
        "seeing": {"column": "psf", "domains": ["good", "poor"], "cut": 1.4, "cut_from": "median of split fit"},
        "cut": {"column": "psf", "domains": ["low", "high"], "cut": 1.3, "cut_from": "config"},
        "nexp": {"column": "nobs", "domains": ["1-3", "3-8"], "edges": [1.0, 3.0, 8.0]},
        "morph": {"column": "type", "domains": ["Dev", "rex"], "groups": {"Dev": ["DEV"], "rex": ["REX", "Rex"]}}}
    assert frame.columns.tolist() == ["id", "seeing", "cut", "nexp", "morph"]
    assert frame.index.tolist() == [10, 11, 12, 13, 14, 15] and frame["id"].tolist() == list("abcdef")
    # -inf and NaN seeing are in no domain; a value at the cut is in the upper one; 9 is above the last edge
    assert frame["seeing"].fillna("-").tolist() == ["good", "poor", "poor", "-", "good", "-"]
    assert frame["cut"].fillna("-").tolist() == ["low", "high", "high", "-", "low", "-"]
    assert frame["nexp"].fillna("-").tolist() == ["1-3", "3-8", "-", "3-8", "-", "1-3"]
    assert frame["morph"].fillna("-").tolist() == ["Dev", "rex", "-", "-", "rex", "Dev"]
    for d in defs:
        got = assign_domain(m, d, resolve_cut(d, m, "fit"))
        assert got.name == d.name and got.dtype == "string" and got.index.equals(m.index)
    with pytest.raises(InputError, match="no finite"):
        resolve_cut(defs[0], m, "train")
    # a stray string in a numeric column is a missing value, not an error
    m2 = m.assign(psf=["1.0", "1.4", "n/a", "x", "1.2", "2.0"])
    assert resolve_cut(defs[0], m2, "fit") == 1.4
    assert member_name("Seeing", "DEV-1.0") == "Seeing-DEV-1.0"
    c = domain_counts(m, frame, defs[2:3])
    assert c.columns.tolist() == ["definition", "domain", "split", "label", "n"]
    assert sorted(map(tuple, c.to_numpy().tolist())) == [
        ("nexp", "1-3", "fit", 0, 1), ("nexp", "1-3", "fit", 1, 1), ("nexp", "3-8", "fit", 0, 1),
        ("nexp", "3-8", "val", 1, 1), ("nexp", "none", "fit", 0, 1), ("nexp", "none", "val", 0, 1)]
    # a categorical split with a category no row has: no rows of zero
    cat = m.assign(split=pd.Categorical(m["split"], categories=["fit", "val", "test"]))
    assert (domain_counts(cat, frame, defs[2:3])["n"] > 0).all()
    assert domain_counts(m, frame, ()).columns.tolist() == ["definition", "domain", "split", "label", "n"]


def test_correlation_intervals_are_percentiles_of_each_resamples_own_pearson_and_spearman():
    import warnings

    from scipy.stats import ConstantInputWarning

    from lensaudit.utils.seeds import rng

    x = np.array([0.10, 0.40, 0.35, 0.80, 0.60, 0.20, 0.90, 0.55])   # probabilities: sums of squares below 1
    y = np.array([0.20, 0.30, 0.50, 0.70, 0.65, 0.10, 0.60, 0.40])
    n, n_boot = x.size, 300
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # a constant resample gives NaN quietly
        c = metrics.correlations(list(x), list(y), n_boot, 7, "all", "a", "b")
    idx = rng(7, "ensemble.correlation", "all", "a", "b").integers(0, n, size=(n, n_boot))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        ps = np.array([pearsonr(x[i], y[i]).statistic for i in idx.T])
        ss = np.array([spearmanr(x[i], y[i]).statistic for i in idx.T])
    for name, bs, full in (("pearson", ps, pearsonr(x, y).statistic), ("spearman", ss, spearmanr(x, y).statistic)):
        bs = bs[np.isfinite(bs)]
        assert c[name] == pytest.approx(full, abs=1e-12)
        assert (c[f"{name}_lo95"], c[f"{name}_hi95"]) == pytest.approx(tuple(np.percentile(bs, [2.5, 97.5])), abs=1e-12)
    three = metrics.correlations([0.1, 0.5, 0.3], [0.2, 0.9, 0.1], 50, 0)
    assert three["n"] == 3 and np.isfinite(three["pearson"]) and np.isfinite(three["spearman"])
    short = metrics.correlations([0.1, 0.5], [0.2, 0.9], 50, 0)
    assert set(short) == {"n", "pearson", "pearson_lo95", "pearson_hi95", "spearman", "spearman_lo95", "spearman_hi95"}
    assert metrics.proportion_row(0, 0).keys() == {"k", "n", "value", "lo95", "hi95"}


def test_pairwise_correlations_streams_defaults_and_small_strata():
    lg = pd.DataFrame({"a": RNG.normal(size=40), "b": RNG.normal(size=40)})
    strata = pd.Series(["a_small"] * 9 + ["b_ten"] * 10 + [None] * 21)
    t = metrics.pairwise_correlations(lg, strata)                    # two members are enough; defaults
    assert t["stratum"].tolist() == ["all", "b_ten", "none"]          # 9 rows are too few, 10 are enough
    for r in t.itertuples():
        m = np.ones(40, bool) if r.stratum == "all" else (strata.fillna("none") == r.stratum).to_numpy()
        want = metrics.correlations(lg["a"].to_numpy()[m], lg["b"].to_numpy()[m], 1000, 0, r.stratum, "a", "b")
        assert (r.pearson_lo95, r.spearman_hi95) == (want["pearson_lo95"], want["spearman_hi95"])
    assert metrics.pairwise_correlations(lg, strata, min_count=11)["stratum"].tolist() == ["all", "none"]


def test_paired_table_against_hand_counts_per_threshold_scorer_and_cell():
    from lensaudit.artifacts import OperatingPoint
    from lensaudit.ensemble.selection import paired_table
    from lensaudit.evaluate.metrics import wilson_interval

    base = np.array([0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.5, 0.7, 0.3, 0.95])
    other = np.array([0.2, 0.9, 0.6, 0.7, 0.1, 0.3, 0.5, 0.9, 0.8, 0.05])
    cells = np.array([3, 3, 3, 3, 1, 1, 1, 1, 1, 7])                 # cell 7 has too few injections
    ops = [OperatingPoint.fixed(0.5), OperatingPoint.fixed(0.75)]
    t = paired_table(pd.DataFrame(index=range(10)), {"baseline": base, "x": other}, ops, cells, min_count=4)
    assert t.columns.tolist() == ["scorer", "threshold", "cell", "n", "completeness_baseline", "completeness", "lo95",
                                  "hi95", "diff", "only_this", "only_baseline", "mcnemar_p"]
    assert [(r.threshold, r.cell) for r in t.itertuples()] == [(o.name, c) for o in ops for c in ("all", "1", "3")]
    assert (t["scorer"] == "x").all()
    for r in t.itertuples():
        thr = 0.5 if r.threshold == "p>=0.5" else 0.75
        m = np.ones(10, bool) if r.cell == "all" else cells == int(r.cell)
        fb, fs = base[m] >= thr, other[m] >= thr                       # a probability at the threshold is found
        n, kb, ks = int(m.sum()), int(fb.sum()), int(fs.sum())
        assert (r.n, r.completeness_baseline, r.completeness) == (n, kb / n, ks / n)
        assert r.diff == pytest.approx((ks - kb) / n)
        assert (r.lo95, r.hi95) == pytest.approx(tuple(np.ravel(wilson_interval(ks, n))))
        assert (r.only_this, r.only_baseline) == (int((fs & ~fb).sum()), int((fb & ~fs).sum()))
        assert r.mcnemar_p == mcnemar_p(fs, fb)
    assert paired_table(pd.DataFrame(index=range(10)), {"baseline": base, "x": other}, ops, cells, 5)["cell"].tolist() \
        == ["all", "1", "all", "1"]                                     # cell 3 (4 injections) is below 5
    first_small = np.array([0, 5, 5, 5, 5, 5, 5, 5, 5, 5])              # a small cell before a large one
    assert paired_table(pd.DataFrame(index=range(10)), {"baseline": base, "x": other}, ops[:1], first_small, 3)[
        "cell"].tolist() == ["all", "5"]


def test_injection_scores_average_gate_and_meta_per_injection_by_its_hosts_domain(tmp_path):
    from lensaudit.ensemble.selection import injection_scores
    from lensaudit.train.meta import MetaConfig, apply_meta, fit_meta_learner, save_meta

    r = np.random.default_rng(3)
    n = 12
    recs = pd.DataFrame({"probability": r.random(n), "host_id": np.repeat(["h1", "h2", "h3"], 4)})
    for name in ("s-good", "s-poor", "m"):
        recs[f"probability_{name}"] = r.random(n)
        recs[f"logit_{name}"] = np.log(recs[f"probability_{name}"] / (1 - recs[f"probability_{name}"]))
    defs = {"s": DomainDef(name="s", column="psf", split="median", labels=("good", "poor"))}
    hosts = pd.DataFrame({"s": pd.array(["poor", "good", None], dtype="string")}, index=["h1", "h2", "h3"])
    ids = [f"t{i}" for i in range(40)]
    y = np.arange(40) % 2
    preds = {k: pd.DataFrame({"id": ids, "logit": r.normal(size=40) + y}) for k in ("s-good", "s-poor")}
    _, state, _ = fit_meta_learner(preds, pd.DataFrame({"id": ids, "label": y}), MetaConfig(hidden=4, folds=2, epochs=5))
    meta = save_meta(state, tmp_path / "meta.pt")
    groups = {"s": ["s-good", "s-poor"], "all": ["s-good", "s-poor", "m"]}
    out = injection_scores(recs, groups, hosts, defs, 0.8, {"s": meta})
    assert list(out) == ["baseline", "s-good", "s-poor", "m", "average_s", "gate_s", "meta_s", "average_all"]
    np.testing.assert_array_equal(out["baseline"], recs["probability"])
    for k in ("s-good", "s-poor", "m"):
        np.testing.assert_array_equal(out[k], recs[f"probability_{k}"])
    p = recs[["probability_s-good", "probability_s-poor"]].to_numpy()
    np.testing.assert_allclose(out["average_s"], p.mean(axis=1))
    np.testing.assert_allclose(out["average_all"], recs[[f"probability_{k}" for k in groups["all"]]].mean(axis=1))
    own = np.repeat([1, 0, -1], 4)                                     # h1 poor, h2 good, h3 in no domain
    np.testing.assert_allclose(out["gate_s"], combine.domain_gate(p, own, 0.8))
    assert out["gate_s"][0] == pytest.approx(0.8 * p[0, 1] + 0.2 * p[0, 0])
    want = apply_meta(meta, {k: pd.DataFrame({"id": [str(i) for i in range(n)], "logit": recs[f"logit_{k}"]})
                             for k in groups["s"]}, pd.DataFrame({"id": [str(i) for i in range(n)], "label": 1}))
    np.testing.assert_allclose(out["meta_s"], want["probability"].to_numpy())


def test_difference_maps_show_each_cells_paired_difference_and_star_only_significant_cells(tmp_path, monkeypatch):
    import lensaudit.ensemble.selection as es
    from lensaudit.artifacts import OperatingPoint
    from lensaudit.selection.grid import Grid, GridConfig

    grid = Grid(GridConfig(theta_e={"edges": (0.5, 1.0, 2.0)}, psf_fwhm={"edges": (0.9, 1.2, 1.5, 1.8)}))
    it = np.repeat([0, 0, 1, 1], 12)
    ip = np.repeat([0, 1, 0, 2], 12)
    base = np.zeros(48)
    gain = np.zeros(48)
    gain[:12] = 1.0                   # cell (0, 0): 12 of 12 found only by the scorer: McNemar p = 2^-11
    gain[12:14] = 1.0                 # cell (0, 1): 2 of 12: p = 0.5
    base[24:30] = 1.0                 # cell (1, 0): both find the same 6
    gain[24:30] = 1.0
    recs = pd.DataFrame({"i_theta_e": it, "i_psf_fwhm": ip})
    recs.loc[36:, "i_psf_fwhm"] = 2
    recs = recs.iloc[:40]             # cell (1, 2) keeps 4 injections: below min_count
    base, gain = base[:40], gain[:40]
    figs = []
    monkeypatch.setattr(es, "save_figure", lambda fig, path: figs.append(fig) or str(path))
    scores = {"baseline": base, "average_x": gain, "x-member": gain, "gate_x": base}
    es.difference_maps(recs, scores, OperatingPoint.fixed(0.5), grid, 5, "fam", tmp_path / "f.png")
    fig = figs[0]
    axes = [a for a in fig.axes if a.get_visible() and a.get_title()]
    assert [a.get_title() for a in axes] == ["average_x", "gate_x"]      # members are not maps
    d = np.ma.filled(axes[0].collections[0].get_array(), np.nan).reshape(2, 3)
    np.testing.assert_allclose(d, [[1.0, 2 / 12, np.nan], [0.0, np.nan, np.nan]])
    stars = [(t.get_position(), t.get_text()) for t in axes[0].texts]
    assert stars == [((1.05, 0.75), "*")]                                  # only cell (0, 0)
    assert len(axes[1].texts) == 0 and np.nanmax(np.abs(axes[1].collections[0].get_array())) == 0
    mesh = axes[0].collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax, mesh.cmap.name) == (-0.3, 0.3, "RdBu")      # a symmetric diverging scale
    cbar = next(a for a in fig.axes if a.get_label() == "<colorbar>")._colorbar           # and its colour bar's
    assert (cbar.norm.vmin, cbar.norm.vmax, cbar.cmap.name) == (-0.3, 0.3, "RdBu")
    assert axes[0].get_xlabel() == "r-band PSF FWHM (arcsec)" and axes[0].get_ylabel() == "theta_E (arcsec)"
    assert "fam: completeness difference" in fig._suptitle.get_text() and "McNemar p < 0.05" in fig._suptitle.get_text()
    # five maps: four columns, two rows, the three spare axes hidden; the colour bar right of the last column
    figs.clear()
    five = {"baseline": base, **{f"average_{i}": gain for i in range(3)}, "gate_x": base, "meta_x": gain}
    assert es.difference_maps(recs, five, OperatingPoint.fixed(0.5), grid, 12, "fam", tmp_path / "g.png") == str(
        tmp_path / "g.png")
    fig = figs[0]
    maps = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in maps] == ["average_0", "average_1", "average_2", "gate_x", "meta_x"]
    grid_axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(grid_axes) == 8 and sum(a.get_visible() for a in grid_axes) == 5
    assert [a.get_ylabel() for a in maps] == ["theta_E (arcsec)", "", "", "", "theta_E (arcsec)"]
    fig.canvas.draw()
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert cbar.get_ylabel() == "completeness - baseline (p>=0.5)"
    assert cbar.get_position().x0 >= max(a.get_position().x1 for a in maps) - 1e-6
    # min_count 12: the cells of 12 injections are measured (a cell of 4 is not)
    d12 = np.ma.filled(maps[0].collections[0].get_array(), np.nan).reshape(2, 3)
    np.testing.assert_allclose(d12, [[1.0, 2 / 12, np.nan], [0.0, np.nan, np.nan]])


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from lensaudit.data.synthetic import make_tiny_store

    d = tmp_path_factory.mktemp("ens")
    store, m = make_tiny_store(d / "store", n=192, seed=4)
    r = np.random.default_rng(2)
    m["split"] = np.where(np.arange(len(m)) % 5 < 3, "train", np.where(np.arange(len(m)) % 5 == 3, "val", "test"))
    m["psfsize_r"] = r.uniform(1.0, 1.8, len(m))
    m["type"] = r.choice(["DEV", "SER", "REX"], len(m))
    m.loc[m["label"] == 1, "tier"] = r.choice(["A", "B"], int(m["label"].sum()))
    m["psfsize_g"], m["psfsize_z"] = m["psfsize_r"] * 1.1, m["psfsize_r"] * 0.95
    m["psfdepth_r"] = 25 * 10 ** (0.8 * (r.uniform(23.2, 24.8, len(m)) - 22.5))  # 1/nanomaggy^2
    m["flux_r"] = r.uniform(5, 50, len(m))
    m.to_parquet(d / "manifest.parquet", index=False)
    sel = {"checkpoint": "replaced by the ensemble", "manifest": str(d / "manifest.parquet"), "store": str(store.root),
           "out": "replaced", "families": [{"name": "sersic", "kind": "sersic"}],
           "grid": {"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": [0.9, 2.0]},
                    "depth": {"edges": [23.0, 25.0]}, "arc_mag": {"edges": [19.0, 21.0, 25.0]}},
           "n_per_cell": 5, "min_count": 3, "chunk_size": 16, "device": "cpu",
           "thresholds": {"probability": [0.5], "fpr": [0.05]}}
    (d / "selection.yaml").write_text(yaml.safe_dump(sel))
    tc = {"arch": "bottleneck_resnet", "model_kwargs": {"stages": [[16, 8, 1, 2]], "stem": 8},
          "preprocess": {"crop": 32}, "epochs": 1, "batch_size": 16, "lr": 3e-3, "seed": 3, "device": "cpu",
          "threads": 1, "checkpoint_every": 1, "manifest": "x", "store": "x"}
    (d / "train.yaml").write_text(yaml.safe_dump(tc))
    truth = pd.DataFrame({"id": m.loc[m["tier"] == "A", "id"], "kind": "lens"})
    truth.to_parquet(d / "truth.parquet", index=False)
    cfg = {"manifest": str(d / "manifest.parquet"), "store": str(store.root), "out": str(d / "out"),
           "train_config": str(d / "train.yaml"), "truth": str(d / "truth.parquet"),
           "domains": [{"name": "seeing", "column": "psfsize_r", "split": "median", "labels": ["good", "poor"]},
                       {"name": "morph", "column": "type", "groups": {"dev": ["DEV"], "other": ["SER", "REX"]}}],
           "combine": {"gate_weight": 0.75, "meta_folds": 3}, "top_k": [5, 10], "n_boot": 200, "min_count": 3,
           "selection": {"config": str(d / "selection.yaml")}}
    (d / "ensemble.yaml").write_text(yaml.safe_dump(cfg))
    from lensaudit.config import load_config
    from lensaudit.ensemble import run_ensemble

    ecfg = load_config(d / "ensemble.yaml", EnsembleConfig)
    return d, m, ecfg, run_ensemble(ecfg)


@pytest.mark.slow
def test_run_trains_one_member_per_domain_on_exactly_its_rows(small_study):
    d, m, cfg, s = small_study
    assert set(s["members"]) == {"seeing-good", "seeing-poor", "morph-dev", "morph-other"}
    cut = float(np.median(m.loc[m["split"] == "train", "psfsize_r"]))
    sub = pd.read_parquet(d / "out" / "members" / "seeing-poor" / "manifest.parquet")
    assert sorted(sub["id"]) == sorted(m.loc[m["psfsize_r"] >= cut, "id"])
    sub = pd.read_parquet(d / "out" / "members" / "morph-other" / "manifest.parquet")
    assert sorted(sub["id"]) == sorted(m.loc[m["type"].isin(["SER", "REX"]), "id"])
    for n in s["members"]:
        assert (d / "out" / "members" / n / "train" / "best.pt").is_file()
    assert (d / "out" / "members" / "baseline" / "train" / "best.pt").is_file()  # no baseline given: trained


@pytest.mark.slow
def test_run_tables_follow_from_the_member_scores(small_study):
    d, m, cfg, s = small_study
    t = pd.read_parquet(d / "out" / "audit_scores.parquet")
    test_ids = sorted(m.loc[m["split"] == "test", "id"])
    assert t["id"].tolist() == test_ids
    pm = t[["p_morph-dev", "p_morph-other"]].to_numpy()
    np.testing.assert_allclose(t["average_morph"], pm.mean(axis=1))
    own = np.where(t["domain_morph"] == "dev", 0, 1)
    np.testing.assert_allclose(t["gate_morph"], combine.domain_gate(pm, own, 0.75))
    np.testing.assert_allclose(t["spread_all"], t[[f"p_{n}" for n in s["members"]]].var(axis=1, ddof=0))
    assert t["meta_seeing"].between(0, 1).all()
    perf = pd.read_csv(d / "out" / "tables" / "performance.csv")
    assert {"baseline", "average_all", "gate_seeing", "meta_morph", "seeing-good"} <= set(perf["scorer"])
    y = pd.read_csv(d / "out" / "tables" / "yield.csv")
    row = y[(y["scorer"] == "average_all") & (y["k"] == 5) & (y["target"] == "true lenses (mock truth)")].iloc[0]
    top5 = t.sort_values(["average_all", "id"], ascending=[False, True]).head(5)
    assert row["n"] == t["true_lens"].sum() and row["found"] == top5["true_lens"].sum()
    sel = pd.read_csv(d / "out" / "tables" / "selective.csv")
    assert set(sel["uncertainty"]) == {"member spread", "margin |p - threshold|", "random"}
    corr = pd.read_csv(d / "out" / "tables" / "correlations.csv")
    assert set(corr["group"]) == {"seeing", "morph", "all"}
    summary = json.loads((d / "out" / "ensemble.json").read_text())
    assert summary["targets"]["true lenses (mock truth)"] == int(t["true_lens"].sum())
    for f in summary["figures"]:
        assert (d / "out" / "figures" / f).stat().st_size > 5000


@pytest.mark.slow
def test_selection_comparison_uses_the_same_injections_for_every_scorer(small_study):
    from math import comb

    from lensaudit.inject.records import read_injections

    d, m, cfg, s = small_study
    recs = read_injections(d / "out" / "selection", "sersic", s["selection"]["config_tag"])
    assert len(recs) == 4 * 5 and recs["index"].is_unique
    for n in s["members"]:  # every member scored every injected cutout
        assert recs[f"probability_{n}"].between(0, 1).all()
    t = pd.read_csv(d / "out" / "tables" / "selection_compare.csv")
    row = t[(t["scorer"] == "average_morph") & (t["cell"] == "all")].iloc[0]
    avg = recs[["probability_morph-dev", "probability_morph-other"]].mean(axis=1).to_numpy()
    base = recs["probability"].to_numpy()
    assert row["n"] == 20 and row["completeness"] == pytest.approx((avg > 0.5).mean())
    assert row["completeness_baseline"] == pytest.approx((base > 0.5).mean())
    b, c = int(((avg > 0.5) & ~(base > 0.5)).sum()), int(((base > 0.5) & ~(avg > 0.5)).sum())
    assert (row["only_this"], row["only_baseline"]) == (b, c)
    # exact two-sided McNemar by hand
    nn = b + c
    p = 1.0 if nn == 0 else min(1.0, 2 * sum(comb(nn, i) for i in range(min(b, c) + 1)) / 2**nn)
    assert row["mcnemar_p"] == pytest.approx(p)
    hosts = m.set_index("id").loc[recs["host_id"]]
    assert set(hosts["split"]) <= {"val", "test"} and (hosts["label"] == 0).all()
    assert {"gate_seeing", "meta_all", "seeing-good"} <= set(t["scorer"])


@pytest.mark.slow
def test_rerun_reuses_trained_members(small_study):
    from lensaudit.ensemble import run_ensemble

    d, m, cfg, s = small_study
    best = d / "out" / "members" / "seeing-good" / "train" / "best.pt"
    before = best.stat().st_mtime_ns
    s2 = run_ensemble(cfg)
    assert best.stat().st_mtime_ns == before
    a = pd.read_parquet(d / "out" / "audit_scores.parquet")
    assert s2["targets"] == s["targets"] and np.isfinite(a["gate_seeing"]).all()


@pytest.mark.slow
def test_a_member_whose_domain_changed_is_trained_again_not_reused(small_study, tmp_path):
    """Reuse is keyed on the member's rows, not its folder: moving the seeing cut from the median to 1.2 arcsec
    rewrites the members' manifests and retrains them (it used to reuse the old models beside the new manifests)."""
    import shutil

    from lensaudit.ensemble import run_ensemble

    d, m, cfg, s = small_study
    shutil.copytree(d / "out" / "members", tmp_path / "out" / "members")
    doms = [dd.model_copy(update={"split": 1.2}) if dd.name == "seeing" else dd for dd in cfg.domains]
    cfg2 = cfg.model_copy(update={"out": str(tmp_path / "out"), "domains": tuple(doms), "selection": None})
    best = tmp_path / "out" / "members" / "seeing-good" / "train" / "best.pt"
    morph = tmp_path / "out" / "members" / "morph-dev" / "train" / "best.pt"
    before, before_morph = best.stat().st_mtime_ns, morph.stat().st_mtime_ns
    s2 = run_ensemble(cfg2)
    assert best.stat().st_mtime_ns != before                     # its rows changed: trained again
    assert morph.stat().st_mtime_ns == before_morph              # unchanged domain: reused
    rows = pd.read_parquet(tmp_path / "out" / "members" / "seeing-good" / "manifest.parquet")
    assert (rows["psfsize_r"] < 1.2).all() and s2["members"]["seeing-good"]["n_rows"] == len(rows)


@pytest.mark.slow
def test_a_domain_without_lenses_in_training_is_refused(small_study, tmp_path):
    d, m, cfg, _ = small_study
    bad = cfg.model_copy(update={"out": str(tmp_path / "o"), "domains": (
        DomainDef(name="seeing", column="psfsize_r", split=1.79),)})
    from lensaudit.ensemble import run_ensemble

    with pytest.raises(InputError, match="member seeing-high: domain seeing=high has no (non-)?lenses in split 'train'"):
        run_ensemble(bad)


def test_mcnemar_counts_only_discordant_pairs():
    a = np.array([1, 1, 0, 0, 1, 1, 1, 1], bool)
    b = np.array([1, 0, 0, 1, 0, 0, 0, 0], bool)
    # discordant: a only 5, b only 1 -> two-sided exact p = 2 * (1 + 6) / 64
    assert mcnemar_p(a, b) == pytest.approx(14 / 64)
    assert mcnemar_p(a, a) == 1.0 and mcnemar_p(b, a) == mcnemar_p(a, b)
    # detections given as 0/1 integers count the same (bitwise ~ on integers would not)
    assert mcnemar_p(a.astype(int), b.astype(int)) == pytest.approx(14 / 64)
    assert mcnemar_p(a, b.astype(np.int64)) == mcnemar_p(a.astype(np.int64), b) == pytest.approx(14 / 64)
    assert list(itertools.combinations(["a", "b", "c"], 2))[0] == ("a", "b")


@pytest.mark.slow
def test_report_shows_the_ensemble_tables_and_figures(small_study, tmp_path):
    from lensaudit.report import build_report

    d, m, cfg, s = small_study
    run = tmp_path / "run"
    run.mkdir()
    (run / "ensemble").symlink_to(d / "out", target_is_directory=True)
    text = build_report(run).read_text()
    sec = text[text.index('data-section="ensemble"'):]
    sec = sec[: sec.index("</section>")]
    assert "not available yet" not in sec
    perf = pd.read_csv(d / "out" / "tables" / "performance.csv")
    for name in perf["scorer"]:
        assert f"<td>{name}</td>" in sec
    assert sec.count("<img") == 4 and "Yield at a fixed inspection budget" in sec
    base = perf[perf["scorer"] == "baseline"].iloc[0]
    assert f"{base['auc']:.3f}" in sec
    assert (run / "report" / "tables" / "ensemble_yield.csv").is_file()


@pytest.mark.parametrize("name", ["ensemble/demo.yaml", "ensemble/dr10.yaml"])
def test_bundled_ensemble_configs_are_valid_and_their_domains_assign(name):
    from lensaudit.config import load_config
    from lensaudit.configs import bundled_config

    cfg = load_config(bundled_config(name), EnsembleConfig)
    m = _manifest()
    m["psfdepth_r"] = np.random.default_rng(3).uniform(500, 3000, len(m))
    frame, rules = assign_all(m, cfg.domains)
    for d in cfg.domains:
        assert frame[d.name].notna().sum() > 0.5 * len(m), d.name  # most objects fall in some domain
        assert set(frame[d.name].dropna()) <= set(rules[d.name]["domains"])


def test_compare_selection_injects_once_and_tables_every_scorer_against_the_baseline(small_run, tmp_path, monkeypatch):
    """The selection comparison on the small fixture: two families of the selection config's three, fewer
    injections per cell, no features kept; every member scores the same injected cutouts; the table (one index over
    the families) and a figure per family are written; a baseline other than the config's checkpoint does not use
    the config's negative scores (they belong to another model) and its injections are tagged apart."""
    import shutil

    import lensaudit.ensemble.selection as es
    from lensaudit.artifacts import EnsembleDir
    from lensaudit.ensemble.selection import compare_selection
    from lensaudit.inject.records import read_injections
    from lensaudit.utils.display import save_figure

    titles = []
    monkeypatch.setattr(es, "save_figure", lambda fig, path: titles.append(fig._suptitle.get_text()) or save_figure(fig, path))

    d = small_run
    sel = {"checkpoint": str(d / "ck.pt"), "manifest": str(d / "manifest.parquet"), "store": str(d / "store"),
           "out": str(tmp_path / "unused"), "families": [{"name": "sersic", "kind": "sersic"},
                                                         {"name": "planted", "kind": "planted"},
                                                         {"name": "planted-b", "kind": "planted"}],
           "grid": {"theta_e": {"edges": [0.5, 1.5, 3.0]}, "psf_fwhm": {"edges": [0.9, 1.8]},
                    "depth": {"edges": [23.0, 25.0]}, "arc_mag": {"edges": [19.0, 21.0, 25.0]}},
           "n_per_cell": 6, "min_count": 2, "chunk_size": 16, "device": "cpu",
           "thresholds": {"probability": [0.5], "fpr": []}}
    (tmp_path / "sel.yaml").write_text(yaml.safe_dump(sel))
    cfg = EnsembleConfig(manifest=str(d / "manifest.parquet"), store=str(d / "store"), train_config="train/demo.yaml",
                         domains=(DomainDef(name="seeing", column="psfsize_r", split=1.3),),
                         selection={"config": str(tmp_path / "sel.yaml"), "families": ["sersic", "planted"],
                                    "n_per_cell": 3},
                         combine={"gate_weight": 0.7})
    hosts = pd.read_parquet(d / "manifest.parquet").set_index("id")
    host_domains = pd.DataFrame({"seeing": np.where(hosts["psfsize_r"] < 1.3, "low", "high")}, index=hosts.index)
    out = tmp_path / "ens"
    res = compare_selection(cfg, d / "ck.pt", {"seeing-low": d / "ck.pt", "seeing-high": d / "ck.pt"},
                            {"seeing": ["seeing-low", "seeing-high"]}, host_domains, {"seeing": cfg.domains[0]}, {},
                            out)
    assert res["families"] == ["sersic", "planted"] and res["n_injections"] == {"sersic": 4 * 3, "planted": 4 * 3}
    ed = EnsembleDir(out)
    recs = read_injections(ed.selection_run.root, "sersic", res["config_tag"], features=True)
    assert len(recs) == 12 and {"probability_seeing-low", "probability_seeing-high"} <= set(recs.columns)
    assert "features" not in recs.columns                            # the comparison keeps no features
    t = pd.read_csv(ed.table("selection_compare"))
    pd.testing.assert_frame_equal(t, pd.read_parquet(ed.table("selection_compare", "parquet")), check_dtype=False)
    assert pd.read_parquet(ed.table("selection_compare", "parquet")).index.equals(pd.RangeIndex(len(t)))
    assert set(t["scorer"]) == {"seeing-low", "seeing-high", "average_seeing", "gate_seeing"}
    assert list(dict.fromkeys(t["family"])) == ["sersic", "planted"] and set(t["threshold"]) == {"p>=0.5"}
    assert [x.split(":")[0] for x in titles] == ["sersic", "planted"]
    t = t[t["family"] == "sersic"]
    row = t[(t["scorer"] == "gate_seeing") & (t["cell"] == "all")].iloc[0]
    own = np.where(hosts.loc[recs["host_id"], "psfsize_r"] < 1.3, 0, 1)
    p = recs[["probability_seeing-low", "probability_seeing-high"]].to_numpy()
    gate = combine.domain_gate(p, own, 0.7)
    assert row["n"] == 12 and row["completeness"] == pytest.approx((gate >= 0.5).mean())
    assert row["completeness_baseline"] == pytest.approx((recs["probability"] >= 0.5).mean())
    assert res["figures"] == [ed.selection_diff_figure(f).name for f in ("sersic", "planted")]
    assert ed.selection_diff_figure("sersic").is_file()
    # again into the same folder: resumed from the chunks, the same table (its index written nowhere)
    again = compare_selection(cfg, d / "ck.pt", {"seeing-low": d / "ck.pt", "seeing-high": d / "ck.pt"},
                              {"seeing": ["seeing-low", "seeing-high"]}, host_domains, {"seeing": cfg.domains[0]}, {},
                              out)
    assert again["config_tag"] == res["config_tag"]
    t2 = pd.read_csv(ed.table("selection_compare"))
    pd.testing.assert_frame_equal(t2[t2["family"] == "sersic"], t)
    assert list(t2.columns) == list(pd.read_parquet(ed.table("selection_compare", "parquet")).columns)
    # the config names negative scores with unknown ids: read (and refused) while the baseline is its checkpoint,
    # not read for another baseline, whose injections get their own tag beside the first ones in the same folder
    pd.DataFrame({"id": ["nobody"], "probability": [0.5]}).to_parquet(tmp_path / "neg.parquet")
    (tmp_path / "sel.yaml").write_text(yaml.safe_dump({**sel, "negatives_predictions": str(tmp_path / "neg.parquet")}))
    with pytest.raises(InputError, match="no score for a negative"):
        compare_selection(cfg, d / "ck.pt", {"seeing-low": d / "ck.pt"}, {"seeing": ["seeing-low"]}, host_domains,
                          {"seeing": cfg.domains[0]}, {}, tmp_path / "e3")
    shutil.copy(d / "ck.pt", tmp_path / "other.pt")
    other = compare_selection(cfg, tmp_path / "other.pt", {"seeing-low": d / "ck.pt", "seeing-high": d / "ck.pt"},
                              {"seeing": ["seeing-low", "seeing-high"]}, host_domains, {"seeing": cfg.domains[0]}, {},
                              out)
    assert other["config_tag"] != res["config_tag"]
    t3 = pd.read_csv(ed.table("selection_compare"))
    assert (t3.loc[t3["cell"] == "all", "n"] == 12).all()             # its own 12 per family, not 24
    with pytest.raises(InputError, match="none of families \\['nope'\\] is in"):
        compare_selection(cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"families": ("nope",)})}),
                          d / "ck.pt", {}, {}, host_domains, {}, {}, tmp_path / "e2")
