"""The configuration reference: written from the typed models, and docs/configuration.md kept equal to it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lensaudit.cli import main
from lensaudit.config_reference import ConfigDoc, constraint_text, reference_markdown, rows, type_name

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


class _Inner(BaseModel):
    """Inner settings."""

    k: int = Field(3, ge=1, le=9, description="a count | with a bar")
    mode: Literal["a", "b"] = "a"


class _Item(BaseModel):
    name: str = Field(..., min_length=1)
    w: float = Field(0.5, gt=0, lt=1)


class _Outer(BaseModel):
    """Outer settings: the example.

    A second paragraph that the reference leaves out."""

    path: str = Field(..., description="a required\n   file")
    inner: _Inner = _Inner(k=5)
    maybe: _Inner | None = None
    items: tuple[_Item, ...] = (_Item(name="x"),)
    tags: list[str] = Field(default_factory=lambda: ["t"])


def test_rows_expand_nested_settings_with_the_enclosing_defaults_and_constraints():
    got = list(rows(_Outer))
    assert got == [
        ("path", "str", "required", "", "a required file"),
        ("inner", "_Inner", "(the rows below)", "", ""),
        ("inner.k", "int", "5", ">= 1, <= 9", "a count | with a bar"),       # 5: the enclosing default, not 3
        ("inner.mode", "Literal['a', 'b']", '"a"', "", ""),
        ("maybe", "_Inner | None", "null", "", ""),
        ("maybe.k", "int", "3", ">= 1, <= 9", "a count | with a bar"),       # no enclosing value: the model's own
        ("maybe.mode", "Literal['a', 'b']", '"a"', "", ""),
        ("items", "tuple[_Item, ...]", '[{"name": "x", "w": 0.5}]', "", ""),
        ("items[].name", "str", "required", "length >= 1", ""),
        ("items[].w", "float", "0.5", "> 0, < 1", ""),
        ("tags", "list[str]", '["t"]', "", ""),
    ]
    assert type_name(int) == "int" and type_name(tuple[float, float]) == "tuple[float, float]"
    assert constraint_text(_Inner.model_fields["k"].metadata) == ">= 1, <= 9"


def test_markdown_has_a_section_per_config_with_its_docstrings_first_paragraph_and_escaped_cells():
    md = reference_markdown([ConfigDoc("outer run", _Outer)])
    lines = md.splitlines()
    i = lines.index("## `lensaudit outer run --config` (_Outer)")
    assert lines[i + 2] == "Outer settings: the example." and "second paragraph" not in md
    assert lines[i + 4 : i + 6] == ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
    assert "| `inner.k` | int | 5 | >= 1, <= 9 | a count \\| with a bar |" in lines
    assert "| `maybe` | _Inner \\| None | null |  |  |" in lines
    assert sum(1 for x in lines if x.startswith("| `")) == 11


def test_the_shipped_reference_is_the_generated_one_and_the_cli_writes_it(tmp_path, capsys):
    want = reference_markdown()
    assert DOC.read_text() == want, "docs/configuration.md is stale: run `lensaudit config-reference --out " \
                                    "docs/configuration.md`"
    for cmd in ("mock build", "catalog build", "cutouts fetch", "train", "evaluate", "selection run", "realism",
                "ensemble run", "validate"):
        assert f"## `lensaudit {cmd} --config`" in want
    assert "| `priors.arc_mag_r` | tuple[float, float] | [19.0, 25.0] |" in want     # a selection run's own priors
    assert main(["config-reference", "--out", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text() == want
    assert main(["config-reference"]) == 0 and capsys.readouterr().out == want
