"""Progress bars on terminals only, the allocator switch, and the demo's one-line stage results."""

from __future__ import annotations

import io

import pytest

from lensaudit.utils import progress as pg


def test_progress_bars_are_off_without_a_terminal_and_on_when_asked(monkeypatch):
    monkeypatch.delenv("LENSAUDIT_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not pg.enabled()
    monkeypatch.setenv("LENSAUDIT_PROGRESS", "1")
    assert pg.enabled()
    seen = []
    with pg.progress(3, "testing") as advance:
        for _ in range(3):
            advance()
            seen.append(1)
    assert seen == [1, 1, 1]
    monkeypatch.setenv("LENSAUDIT_PROGRESS", "0")
    assert not pg.enabled()
    with pg.progress(3, "quiet") as advance:
        assert advance() is None


def test_keep_freed_memory_applies_once():
    from lensaudit.utils.alloc import keep_freed_memory
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() == first


@pytest.mark.parametrize("name, summary, want", [
    ("fetch", {"n_stored": 5, "n_already_stored": 10, "n_failed": 1}, "15 cutouts in the store (5 new), 1 failed"),
    ("evaluate", {"roc_auc": 0.9471, "n_pos": 70, "n_neg": 769}, "val ROC AUC 0.947 (70 pos, 769 neg)"),
    ("selection", {"completeness_p05": {"sersic": 0.215}}, "completeness p>0.5: sersic 0.21"),
    ("check", {"passed": False}, "FAILED"),
    ("train", {"best_val_auc": None}, ""),
    ("unknown", {}, ""),
])
def test_one_line_stage_results(name, summary, want):
    from lensaudit.demo import one_line
    assert one_line(name, summary) == want
