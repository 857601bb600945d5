"""The mutation report's sampled estimate (benchmarks/mutation.py): a module whose unchecked mutants stand as a
random sample must be judged by the test stated before the sample ran, with first-pass verdicts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from scipy.optimize import brentq
from scipy.stats import binom

_SPEC = importlib.util.spec_from_file_location(
    "mutation_report", Path(__file__).resolve().parents[1] / "benchmarks" / "mutation.py")
mutation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mutation)

MOD = "lensaudit.selection.run"


def _name(fn: str, i: int) -> str:
    return f"{MOD}.x_{fn}__mutmut_{i}"


def _record(first_pass=None, n: int = 10):
    pop = [_name("b", i) for i in range(1, 41)]           # 40 mutants nobody checked in full
    sample = pop[:n]                                     # n of them drawn
    return {"seed": 1, "population": pop, "sample": sample, "first_pass": first_pass,
            "function_hashes": {"x_a": "h1", "x_b": "h2"}}


def _statuses(sample_survivors: int, sample_equivalent: int = 0, n: int = 10):
    st = {_name("a", i): "killed" for i in range(1, 31)}          # census: 30 killed ...
    st[_name("a", 31)] = "survived"                               # ... one survivor ...
    st[_name("a", 32)] = "survived"                               # ... one equivalent
    for i in range(1, 41):
        st[_name("b", i)] = "not checked"
    for i in range(1, n + 1):
        st[_name("b", i)] = "killed"
    for i in range(1, sample_survivors + sample_equivalent + 1):
        st[_name("b", i)] = "survived"
    eq = {_name("a", 32)} | {_name("b", i) for i in range(sample_survivors + 1,
                                                           sample_survivors + sample_equivalent + 1)}
    return st, eq


HASHES = {f"{MOD}.x_a": "h1", f"{MOD}.x_b": "h2"}


def test_the_sampled_score_and_its_lower_bound_match_a_hand_computation():
    st, eq = _statuses(sample_survivors=2, sample_equivalent=1)
    out = mutation.sampled_estimate(_record(), st, eq, HASHES, MOD)
    # census: 30 killed, 1 survived, 1 equivalent; sample: 7 killed, 2 survived, 1 equivalent (m = 9 of n = 10)
    assert (out["census_killed"], out["census_survived"], out["census_equivalent"]) == (30, 1, 1)
    assert (out["sample_killed"], out["sample_survived_first_pass"], out["sample_equivalent"]) == (7, 2, 1)
    n_ne = 40 * 9 / 10
    assert out["score_estimate"] == pytest.approx((30 + n_ne * 7 / 9) / (31 + n_ne), abs=1e-4)
    # the one-sided 95% Clopper-Pearson upper bound: the rate at which 2 or fewer survivors of 9 has chance 0.05
    r_up = brentq(lambda p: binom.cdf(2, 9, p) - 0.05, 1e-9, 1 - 1e-9)
    assert out["survivor_rate_upper95"] == pytest.approx(r_up, abs=1e-4)
    assert out["score_lower95"] == pytest.approx((30 + n_ne * (1 - r_up)) / (31 + n_ne), abs=1e-4)
    assert out["passes"] is (out["score_lower95"] >= 0.90) and out["passes"] is False


def test_a_sample_without_survivors_passes_and_one_with_many_fails():
    ok = mutation.sampled_estimate(_record(n=40), *_statuses(0, n=40), HASHES, MOD)
    bad = mutation.sampled_estimate(_record(n=40), *_statuses(5, n=40), HASHES, MOD)
    small = mutation.sampled_estimate(_record(n=10), *_statuses(0, n=10), HASHES, MOD)
    assert small["passes"] is False          # no survivor among 10 draws does not bound the rate below 0.26
    assert ok["passes"] is True and ok["score_lower95"] < ok["score_estimate"]
    assert bad["passes"] is False and bad["score_lower95"] < ok["score_lower95"]


def test_first_pass_verdicts_count_even_after_new_tests_kill_the_sampled_survivors():
    st, eq = _statuses(0)                                       # today every sampled mutant is killed ...
    first = {m: ("survived" if i < 3 else "killed") for i, m in enumerate(_record()["sample"])}
    out = mutation.sampled_estimate(_record(first), st, eq, HASHES, MOD)   # ... but three survived first
    assert out["sample_survived_first_pass"] == 3
    assert out["score_estimate"] < mutation.sampled_estimate(_record(), st, eq, HASHES, MOD)["score_estimate"]


def test_an_unfinished_or_stale_sample_gives_no_verdict():
    st, eq = _statuses(0)
    st[_name("b", 4)] = "not checked"
    pending = mutation.sampled_estimate(_record(), st, eq, HASHES, MOD)
    assert pending["passes"] is None and pending["sample_pending"] == 1
    stale = mutation.sampled_estimate(_record(), *_statuses(0), {**HASHES, f"{MOD}.x_b": "changed"}, MOD)
    assert stale["status"].startswith("stale") and stale["functions"] == ["x_b"] and "passes" not in stale
