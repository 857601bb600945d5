"""Schemas and versions of the artifacts stages hand each other, and their checked readers and writers.

An artifact is a table (Parquet, with JSON metadata) or a document (JSON). Each has a name, a version
and what a reader relies on: a table's columns (name, dtype kind, unit), a document's keys. Writers
stamp the name and version (a table: metadata key ``lensaudit.artifact``; a document: top-level keys
``artifact`` and ``version``); readers check the stamp and the columns or keys and fail with an
:class:`~lensaudit.artifacts.tables.ArtifactError` naming the file and what is wrong, so an output of
another lensaudit version, or a hand-edited one missing a column, never passes silently.

Columns a stage adds beyond its schema travel along unchecked; what consumers read is in the schema.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lensaudit.artifacts.tables import ArtifactError, read_table, read_table_metadata, write_table
from lensaudit.utils.io import atomic_write_json

#: Parquet metadata key of the artifact stamp (name and version).
STAMP_KEY = b"lensaudit.artifact"


@dataclass(frozen=True)
class Column:
    """A column a consumer reads: name, dtype kind (``f`` float, ``i`` integer, ``b`` bool, ``O`` text or objects,
    ``n`` any number, ``?`` bool or None), unit and meaning."""

    name: str
    kind: str = "n"
    unit: str = ""
    doc: str = ""


class _Columns:
    """Attribute access to a schema's column names: ``REALISM.c.probe_auc == "probe_auc"``; an undeclared name is an
    AttributeError, so a consumer cannot read a column the contract does not name."""

    def __init__(self, schema: TableSchema):
        self._schema = schema

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in self._schema.names:
            raise AttributeError(f"{self._schema.name} has no column {name!r}; it declares {list(self._schema.names)}")
        return name


@dataclass(frozen=True)
class TableSchema:
    """A table artifact: its name, version, the package that writes it and the columns consumers read."""

    name: str
    version: int
    columns: tuple[Column, ...]
    doc: str = ""
    meta_key: bytes | None = None   # where the table's own metadata lives (besides the stamp), if any
    owner: str = ""                 # the lensaudit package that writes it

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def c(self) -> _Columns:
        """The column names, as attributes (see :class:`_Columns`)."""
        return _Columns(self)

    def check(self, df: pd.DataFrame, source: str) -> pd.DataFrame:
        """``df`` after checking every schema column is present with a compatible dtype."""
        missing = [c.name for c in self.columns if c.name not in df.columns]
        if missing:
            raise ArtifactError(f"{source}: {self.name} v{self.version} lacks column(s) {missing}")
        for c in self.columns:
            k = df[c.name].dtype.kind
            ok = {"f": k in "fiu", "i": k in "iu", "b": k == "b", "O": k in "OSUT", "n": k in "fiub",
                  "?": k in "bO"}[c.kind]
            if not ok and len(df):
                raise ArtifactError(f"{source}: {self.name} column {c.name!r} has dtype {df[c.name].dtype}, expected "
                                    f"{ {'f': 'float', 'i': 'integer', 'b': 'bool', 'O': 'text', 'n': 'numeric', '?': 'bool or None'}[c.kind]}")
        return df


@dataclass(frozen=True)
class DocSchema:
    """A JSON document artifact: its name, version and the top-level keys consumers read."""

    name: str
    version: int
    keys: tuple[str, ...]
    doc: str = ""
    extra: dict = field(default_factory=dict)


def _stamp(schema: TableSchema | DocSchema) -> dict:
    return {"artifact": schema.name, "version": schema.version}


def _check_stamp(stamp: dict | None, schema: TableSchema | DocSchema, path: Path) -> None:
    if stamp is None or "artifact" not in stamp:
        raise ArtifactError(f"{path}: no lensaudit artifact stamp (expected {schema.name} v{schema.version}; written "
                            f"by an older lensaudit or by hand: re-run the stage that writes it)")
    if stamp["artifact"] != schema.name:
        raise ArtifactError(f"{path}: is a {stamp['artifact']} artifact, not {schema.name}")
    if int(stamp.get("version", -1)) != schema.version:
        raise ArtifactError(f"{path}: {schema.name} version {stamp.get('version')} but this lensaudit reads version "
                            f"{schema.version}; re-run the stage that writes it")


def write_artifact_table(df: pd.DataFrame, path: str | os.PathLike, schema: TableSchema, meta: dict | None = None) -> Path:
    """Write ``df`` (checked against ``schema``) with its stamp; ``meta`` under the schema's own key (or the stamp's)."""
    path = Path(path)
    schema.check(df, str(path))
    stamped = {**_stamp(schema), **({"meta": meta} if meta is not None and schema.meta_key is None else {})}
    if schema.meta_key is None:
        return write_table(df, path, STAMP_KEY, stamped)
    # a table with its own metadata key keeps it (older readers of that key go on working); the stamp rides inside it
    return write_table(df, path, schema.meta_key, {**(meta or {}), "_artifact": _stamp(schema)})


def read_artifact_meta(path: str | os.PathLike, schema: TableSchema, external_ok: bool = False) -> dict:
    """The metadata written with a table artifact, after checking its stamp (``external_ok``: a table without
    a stamp, made outside lensaudit, passes; a stamp of another artifact or version never does)."""
    path = Path(path)
    if not path.name.lower().endswith((".parquet", ".pq")):
        if external_ok:
            return {}
        raise ArtifactError(f"{path}: {schema.name} must be a Parquet file written by lensaudit")
    if schema.meta_key is None:
        stamp = read_table_metadata(path, STAMP_KEY)
        if stamp is None and external_ok:
            return {}
        _check_stamp(stamp, schema, path)
        return stamp.get("meta") or {}
    meta = read_table_metadata(path, schema.meta_key)
    if (meta is None or "_artifact" not in meta) and external_ok:
        return meta or {}
    _check_stamp((meta or {}).get("_artifact"), schema, path)
    return {k: v for k, v in meta.items() if k != "_artifact"}


def read_artifact_table(path: str | os.PathLike, schema: TableSchema, columns: list[str] | None = None,
                        external_ok: bool = False) -> pd.DataFrame:
    """A table artifact after checking its stamp, version and schema columns (``external_ok``: see
    :func:`read_artifact_meta`; the columns are checked all the same)."""
    path = Path(path)
    read_artifact_meta(path, schema, external_ok)
    return schema.check(read_table(path, schema.name, columns=columns), str(path))


def write_doc(path: str | os.PathLike, schema: DocSchema, data: dict) -> Path:
    """Write a JSON document artifact with its stamp, after checking it has the schema's keys."""
    missing = [k for k in schema.keys if k not in data]
    if missing:
        raise ArtifactError(f"{path}: {schema.name} to write lacks key(s) {missing}")
    atomic_write_json(path, {**_stamp(schema), **data})
    return Path(path)


def read_doc(path: str | os.PathLike, schema: DocSchema, missing_ok: bool = False) -> dict | None:
    """A JSON document artifact after checking its stamp, version and keys (None if absent and ``missing_ok``)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise ArtifactError(f"{path}: {schema.name} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: {schema.name} must be a JSON object")
    _check_stamp(data, schema, path)
    missing = [k for k in schema.keys if k not in data]
    if missing:
        raise ArtifactError(f"{path}: {schema.name} v{schema.version} lacks key(s) {missing}")
    return {k: v for k, v in data.items() if k not in ("artifact", "version")}
