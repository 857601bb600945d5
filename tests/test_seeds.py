"""Named seed streams: independent of each other, stable across processes, and used by the mock."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lensaudit.utils.seeds import derive_seed, rng, stream_id


def test_streams_are_independent_of_draws_in_other_streams():
    a1 = rng(42, "mock.lenses").random(5)
    b = rng(42, "mock.sources")
    b.random(1000)  # many draws in another stream
    a2 = rng(42, "mock.lenses").random(5)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(rng(42, "mock.lenses").random(5), rng(42, "mock.sources").random(5))
    assert not np.array_equal(rng(42, "x").random(5), rng(43, "x").random(5))
    assert not np.array_equal(rng(42, "x", 0).random(5), rng(42, "x", 1).random(5))


def test_stream_identities_are_stable_across_processes():
    # SHA-256 based, not Python's salted hash(): a fresh interpreter gives the same numbers
    code = "from lensaudit.utils.seeds import derive_seed, stream_id; print(stream_id('a.b'), derive_seed(7, 'x', 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in out] == [stream_id("a.b"), derive_seed(7, "x", 3)]
    assert stream_id("a.b") == int.from_bytes(__import__("hashlib").sha256(b"a.b").digest()[:4], "big")
    assert 0 <= derive_seed(7, "x") < 2**63


def test_bad_stream_keys():
    with pytest.raises(ValueError, match="non-empty"):
        rng(1, "")
    with pytest.raises(ValueError, match="non-negative"):
        rng(-1, "a")
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(1, "a", -3)


def test_mock_sub_populations_draw_from_their_own_streams(tmp_path, reference):
    """More confusers must not move a lens, nor the catalog noise of any object: each sub-population and
    purpose has its own stream (with one generator drawn in turn, the sweeps' flux noise, drawn after the
    confusers, would shift)."""
    import pandas as pd

    from lensaudit.mock.config import MockConfig
    from lensaudit.mock.survey import build_survey

    base = MockConfig(area_deg2=0.25, seed=5)
    more = base.model_copy(update={"confusers": base.confusers.model_copy(update={"ring_fraction_of_early": 0.2,
                                                                                      "merger_per_deg2": 90.0})})
    build_survey(base, tmp_path / "a", reference)
    build_survey(more, tmp_path / "b", reference)
    ta = pd.read_parquet(tmp_path / "a" / "truth" / "truth.parquet")
    tb = pd.read_parquet(tmp_path / "b" / "truth" / "truth.parquet")
    la = ta[ta.kind == "lens"].sort_values("ra")
    lb = tb[tb.kind == "lens"].sort_values("ra")
    assert len(la) > 5 and (tb.kind == "ring").sum() > (ta.kind == "ring").sum()
    for c in ("ra", "dec", "theta_e", "src_rmag", "lens_q"):
        np.testing.assert_array_equal(la[c].to_numpy(), lb[c].to_numpy())
    from lensaudit.survey.sweepio import read_sweep

    sa, sb = (pd.concat([read_sweep(f) for f in sorted((tmp_path / x / "sweeps").glob("*.fits"))], ignore_index=True)
              for x in ("a", "b"))
    assert len(sa) == len(sb) > 1000
    for c in ("FLUX_G", "FLUX_R", "FLUX_Z", "NOBS_Z"):
        np.testing.assert_array_equal(sa[c].to_numpy(), sb[c].to_numpy())
