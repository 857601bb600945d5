"""Sweep ingestion: DR10 sweep FITS -> Parquet partitions in native byte order.

One partition per sweep file, ``<out>/sweep=<file stem>/part-0.parquet``, written atomically;
column names and dtypes follow the DR10 schema (``survey.columns``), each field carries its
unit in the Arrow field metadata, and the file records its source name and size, so an
interrupted ingestion resumes by skipping partitions already written for the same source.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lensaudit.survey.columns import LENS_COLUMNS, SWEEP_SCHEMA
from lensaudit.survey.geometry import parse_sweep_filename
from lensaudit.survey.sweepio import read_sweep
from lensaudit.utils.io import atomic_path

PART_NAME = "part-0.parquet"


def partition_path(out_root: str | os.PathLike, sweep_path: str | os.PathLike) -> Path:
    stem = Path(sweep_path).name.removesuffix(".gz").removesuffix(".fits")
    return Path(out_root) / f"sweep={stem}" / PART_NAME


def _source_meta(path: Path) -> dict[bytes, bytes]:
    return {b"lensaudit.source": path.name.encode(), b"lensaudit.source_size": str(path.stat().st_size).encode()}


def ingest_sweep(sweep_path: str | os.PathLike, out_root: str | os.PathLike,
                 columns: tuple[str, ...] | None = LENS_COLUMNS, force: bool = False) -> dict:
    """Convert one sweep file; returns {source, partition, rows, skipped}. ``columns=None``: every column."""
    src = Path(sweep_path)
    parse_sweep_filename(src.name)  # a clear error for a file that is not named like a sweep
    dst = partition_path(out_root, src)
    meta = _source_meta(src)
    if dst.exists() and not force:
        old = pq.read_schema(dst).metadata or {}
        if all(old.get(k) == v for k, v in meta.items()):
            return {"source": src.name, "partition": str(dst), "rows": pq.read_metadata(dst).num_rows, "skipped": True}
    df = read_sweep(src, columns)
    fields = []
    for name in df.columns:
        col = SWEEP_SCHEMA[name]
        arr = pa.array(df[name].to_numpy() if df[name].dtype != object else df[name].tolist())
        fields.append(pa.field(name, arr.type, metadata={b"unit": col.unit.encode(),
                                                          b"description": col.description.encode()}))
    table = pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False).replace_schema_metadata(meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        # dictionary encoding for the string columns only: on the float columns (nearly all values distinct) it
        # only costs (a demo partition: 0.55 -> 0.24 s to write, 17.5 -> 13.6 MB, the same table)
        pq.write_table(table, tmp, compression="zstd",
                       use_dictionary=[f.name for f in table.schema if pa.types.is_string(f.type)])
    return {"source": src.name, "partition": str(dst), "rows": table.num_rows, "skipped": False}


def list_sweeps(directory: str | os.PathLike) -> list[Path]:
    """Sweep FITS files (``sweep-*.fits[.gz]``) in a directory, sorted by name."""
    d = Path(directory)
    return sorted(p for p in d.glob("sweep-*.fits*") if p.is_file())


def list_partitions(directory: str | os.PathLike) -> list[Path]:
    """Ingested partitions (``sweep=*/part-0.parquet``) in a directory, sorted by name."""
    return sorted(Path(directory).glob(f"sweep=*/{PART_NAME}"))
