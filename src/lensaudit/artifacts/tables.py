"""Reading and writing lensaudit's tables: one Parquet writer (deterministic, atomic, JSON metadata) and
one reader for Parquet or CSV, with errors that name the file.

Every lensaudit Parquet table with metadata is written by :func:`write_table`: fixed schema, no pandas
metadata, zstd, atomic, JSON metadata under one key, so the same rows give the same bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lensaudit.errors import LensauditError
from lensaudit.utils.io import atomic_path


class ArtifactError(LensauditError, ValueError):
    """An artifact (table, document, run folder) is missing, unreadable, of another version or lacks a column or
    key; the message names the file and what is wrong."""


def read_table(path: str | os.PathLike, what: str = "table", columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet (``.parquet``, ``.pq``) or CSV (``.csv``, ``.csv.gz``, ``.txt``) table; ArtifactError if unreadable.

    CSV ids are read as strings.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{what} {path}: file not found")
    if path.is_dir():
        raise ArtifactError(f"{what} {path}: is a directory, not a table file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path, columns=columns)
        if name.endswith((".csv", ".txt", ".csv.gz")):
            return pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""], usecols=columns)
    except Exception as exc:  # pyarrow and pandas raise many types for broken files
        raise ArtifactError(f"{what} {path}: cannot read ({type(exc).__name__}: {exc})") from exc
    raise ArtifactError(f"{what} {path}: unknown format {path.suffix!r} (use .parquet or .csv)")


def write_table(df: pd.DataFrame, path: str | os.PathLike, key: bytes | None = None, meta: dict | None = None) -> Path:
    """Write a Parquet table deterministically (no pandas metadata, zstd) and atomically, with
    ``meta`` as sorted-key JSON under metadata ``key``."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    md = {key: json.dumps(meta or {}, sort_keys=True, default=str).encode()} if key is not None else {}
    table = table.replace_schema_metadata(md)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_table_metadata(path: str | os.PathLike, key: bytes) -> dict | None:
    """The JSON metadata stored under ``key`` by :func:`write_table`, or None."""
    try:
        md = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise ArtifactError(f"table {path}: file not found") from None
    except Exception as exc:
        raise ArtifactError(f"table {path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    return json.loads(md[key]) if key in md else None


