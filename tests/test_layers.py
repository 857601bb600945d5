"""The stage order made true: no module imports a later stage or a sibling (lensaudit.layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lensaudit
from lensaudit.layers import LAYERS, layer_of

PKG = Path(lensaudit.__file__).resolve().parent


def _top(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level lensaudit package) of every import in a file, including imports inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg_parts = path.relative_to(PKG).parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "lensaudit" or a.name.startswith("lensaudit."):
                    parts = a.name.split(".")
                    if len(parts) > 1:
                        out.append((node.lineno, parts[1]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = list(pkg_parts[: len(pkg_parts) - node.level + 1])
                mod = [*base, *(node.module.split(".") if node.module else [])]
                if mod:
                    out.append((node.lineno, mod[0]))
                else:
                    out += [(node.lineno, a.name) for a in node.names]
            elif node.module == "lensaudit":
                out += [(node.lineno, a.name) for a in node.names if a.name != "__version__"]
            elif node.module and node.module.startswith("lensaudit."):
                out.append((node.lineno, node.module.split(".")[1]))
    return out


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PKG:
            continue
        here = _top(path)
        mine = layer_of(here)
        for line, target in _imports(path):
            if target == here:
                continue
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{path.relative_to(PKG)}:{line} imports lensaudit.{target} (a later stage)")
            elif theirs == mine:
                bad.append(f"{path.relative_to(PKG)}:{line} imports lensaudit.{target} (a sibling stage)")
    return bad


def test_every_top_level_module_is_in_the_layer_table():
    names = {p.name.removesuffix(".py") for p in PKG.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())}
    listed = {n for layer in LAYERS for n in layer}
    assert names <= listed, f"modules missing from lensaudit.layers.LAYERS: {sorted(names - listed)}"


def test_no_module_imports_a_later_stage():
    assert violations() == []


def test_the_check_catches_a_backward_import(tmp_path, monkeypatch):
    # the checker itself must be able to fail: a survey module importing the mock is flagged
    bad = PKG / "survey" / "_layers_probe.py"
    bad.write_text("def f():\n    from lensaudit.mock.survey import MockSurvey  # noqa\n    from ..train import loop  # noqa\n")
    try:
        v = violations()
    finally:
        bad.unlink()
    assert any("_layers_probe.py:2 imports lensaudit.mock" in x for x in v)
    assert any("_layers_probe.py:3 imports lensaudit.train" in x for x in v)


@pytest.mark.parametrize("name", ["nonexistent_stage"])
def test_unlisted_names_are_an_error(name):
    with pytest.raises(KeyError, match="not in lensaudit.layers.LAYERS"):
        layer_of(name)


# --------------------------------------------------------------------------- file-level cycles
def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str | None:
    """The lensaudit module (file) that ``name`` denotes: a module, a package (its __init__), or None."""
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    if (PKG / rel).with_suffix(".py").is_file():
        return name
    if (PKG / rel / "__init__.py").is_file():
        return name
    return None


def file_imports(path: Path) -> set[str]:
    """Every lensaudit module (file) that ``path`` imports, inside functions too; ``from pkg import sub`` names
    the submodule, ``from pkg import obj`` the package's ``__init__``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lensaudit.") and _resolve(a.name)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                mod = node.module or ""
            if not (mod == "lensaudit" or mod.startswith("lensaudit.")):
                continue
            for a in node.names:
                sub = _resolve(f"{mod}.{a.name}")
                out.add(sub if sub else mod)
    out.discard(me)
    return {m for m in out if _resolve(m)}


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of more than one lensaudit file (Tarjan), each sorted."""
    graph = {_module_name(p): file_imports(p) for p in sorted(PKG.rglob("*.py"))}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_files():
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle_inside_a_package():
    a, b = PKG / "survey" / "_cycle_a.py", PKG / "survey" / "_cycle_b.py"
    a.write_text("def f():\n    from lensaudit.survey._cycle_b import g  # noqa\n")
    b.write_text("from lensaudit.survey import _cycle_a  # noqa\n")
    try:
        cycles = import_cycles()
    finally:
        a.unlink()
        b.unlink()
    assert ["lensaudit.survey._cycle_a", "lensaudit.survey._cycle_b"] in cycles
