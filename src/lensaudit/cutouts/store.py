"""Sharded cutout store: HDF5 shards of float32 g,r,z nanomaggy cubes plus a Parquet index.

Layout of a store directory::

    store.json                       format, version, cutout size, bands, units, pixel scale
    shards/shard-<seq>-<token>.h5    dataset ``images`` (n, 3, N, N) float32 little-endian,
                                     contiguous; datasets ``ids`` and ``crc32`` (per cutout)
    index/shard-<seq>-<token>.parquet  one row per cutout: id, shard, offset, ra, dec, QA fields,
                                     provenance, any manifest columns, and ``replaces`` (True
                                     when the row supersedes an earlier copy of its id)
    failures/part-<seq>-<token>.parquet  failed fetches: id, ra, dec, reason, url, attempts, time

Why HDF5 shards: a real run holds ~450,000 cutouts (~55 GB); one file per cutout makes
training open a file per sample, while a shard of a few thousand cutouts is opened once per
worker. Shards are self-describing HDF5 (any HDF5 tool reads them), but the image block is
stored contiguous and uncompressed so readers memory-map it directly (h5py's per-read
overhead alone caps random access near 2,500 cutouts/s on 2 cores; a memory map with a
CRC-32 check per cutout reads ~20,000/s, see ``benchmarks/``). Every read checks the
cutout's CRC-32, so silent corruption becomes an error naming the shard and the cutout.

Atomicity: a shard is written to a temporary file, fsynced and renamed; only then is its
index file written (also atomically). The index file is the commit marker: a shard without
one is an orphan from a killed writer, invisible to readers and removed by :meth:`repair`.
So a killed writer loses at most the cutouts buffered since its last commit, and never
exposes a half-written cutout. One writer at a time holds an exclusive lock, and re-reads the index after taking it.

Ids are UTF-8 strings. An id is stored once; a re-fetch at moved coordinates writes a new copy
marked ``replaces``, which supersedes the old one (the old pixels stay in their shard). Any
other repeated id is reported by :meth:`CutoutStore.verify`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lensaudit.errors import BusyError, LensauditError
from lensaudit.survey.constants import BANDS, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC
from lensaudit.utils.io import atomic_path, atomic_write_json, exclusive_lock, sha256_file

log = logging.getLogger(__name__)

STORE_FORMAT = "lensaudit-cutout-store"
STORE_VERSION = 1
DEFAULT_SHARD_SIZE = 2048


class StoreError(LensauditError, RuntimeError):
    """A cutout store is missing, malformed, locked or corrupt; the message names what."""


class CutoutNotFoundError(StoreError, KeyError):
    """Requested ids are not in the store (the message names them)."""


class StoreBusyError(StoreError, BusyError):
    """Another process is writing to the store."""


class StoreCorruptError(StoreError):
    """A shard failed its checksum or does not match its index."""


@dataclass
class _Pending:
    ids: list[str] = field(default_factory=list)
    cubes: list[np.ndarray] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def _now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CutoutStore:
    """Read access to a sharded cutout store (and the factory for its writer).

    ``store[ids]`` / :meth:`get` return float32 arrays of shape (n, 3, N, N) in g,r,z order,
    nanomaggies. Handles are opened lazily per process, so a store object can be handed to
    DataLoader worker processes.
    """

    def __init__(self, root: str | os.PathLike, create: bool = False, size: int = CUTOUT_SIZE,
                 bands: str = "".join(BANDS), shard_size: int = DEFAULT_SHARD_SIZE):
        self.root = Path(root)
        meta_path = self.root / "store.json"
        if not meta_path.exists():
            if not create:
                raise StoreError(f"cutout store {self.root}: no store.json (not a lensaudit store, or never created)")
            self.root.mkdir(parents=True, exist_ok=True)
            for sub in ("shards", "index", "failures"):
                (self.root / sub).mkdir(exist_ok=True)
            atomic_write_json(meta_path, {
                "format": STORE_FORMAT, "version": STORE_VERSION, "size_pix": int(size), "bands": bands,
                "dtype": "float32", "units": "nanomaggy", "pixscale_arcsec": PIXEL_SCALE_ARCSEC,
                "shard_size": int(shard_size), "layout": "(n, band, y, x)", "created_utc": _now_utc(),
            })
        try:
            self.meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"cutout store {self.root}: store.json is not valid JSON ({exc})") from exc
        if self.meta.get("format") != STORE_FORMAT:
            raise StoreError(f"cutout store {self.root}: store.json format {self.meta.get('format')!r} is not {STORE_FORMAT!r}")
        if int(self.meta.get("version", -1)) > STORE_VERSION:
            raise StoreError(f"cutout store {self.root}: version {self.meta['version']} is newer than this lensaudit reads")
        self.size = int(self.meta["size_pix"])
        self.bands = str(self.meta["bands"])
        self.shard_size = int(self.meta.get("shard_size", shard_size))
        self._index: pd.DataFrame | None = None
        self._pos: pd.Index | None = None
        self._unmarked_duplicates: list[str] = []
        self._handles: dict[str, tuple[np.memmap, np.ndarray, np.ndarray]] = {}
        #: verify each cutout's CRC-32 on read (about 35 us per cutout)
        self.check_crc = True
        self._pid = os.getpid()

    # ------------------------------------------------------------------ index
    def _index_files(self) -> list[Path]:
        return sorted((self.root / "index").glob("shard-*.parquet"))

    def fingerprint(self) -> str:
        """SHA-256 over the store's committed index files (names and contents): it changes whenever a cutout is
        added, replaced or removed (each index row carries the cutout's CRC-32), and costs no pixel read."""
        h = hashlib.sha256()
        for f in self._index_files():
            h.update(f.name.encode())
            h.update(bytes.fromhex(sha256_file(f)))
        return h.hexdigest()

    def reload(self) -> None:
        """Forget cached index and handles (after another process wrote to the store)."""
        self.close()
        self._index = None
        self._pos = None

    @property
    def index(self) -> pd.DataFrame:
        """The Parquet index as a DataFrame (one row per stored cutout)."""
        if self._index is None:
            files = self._index_files()
            if files:
                frames = [pq.read_table(f).to_pandas() for f in files]
                df = pd.concat(frames, ignore_index=True)
            else:
                df = pd.DataFrame({"id": pd.Series(dtype=str), "shard": pd.Series(dtype=str),
                                   "offset": pd.Series(dtype=np.int64), "ra": pd.Series(dtype=float),
                                   "dec": pd.Series(dtype=float)})
            df["id"] = df["id"].astype(str)
            df, self._unmarked_duplicates = _effective_rows(df)
            if self._unmarked_duplicates:
                log.warning("cutout store %s: %d id(s) stored twice without being marked as replacements; the "
                            "first copy is used (run `lensaudit cutouts verify`)", self.root,
                            len(self._unmarked_duplicates))
            self._index = df
            self._pos = pd.Index(df["id"].to_numpy())
        return self._index

    def failures(self) -> pd.DataFrame:
        """Recorded fetch failures (latest record per id)."""
        files = sorted((self.root / "failures").glob("part-*.parquet"))
        if not files:
            return pd.DataFrame(columns=["id", "ra", "dec", "reason", "url", "attempts", "time_utc"])
        df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        df["id"] = df["id"].astype(str)
        return df.drop_duplicates("id", keep="last").reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, cid: object) -> bool:
        _ = self.index  # builds the id lookup
        assert self._pos is not None
        return str(cid) in self._pos

    def ids(self) -> np.ndarray:
        return self.index["id"].to_numpy()

    # ------------------------------------------------------------------ reads
    def _shard(self, shard: str) -> tuple[np.memmap, np.ndarray, np.ndarray]:
        """(memory map of the images, per-cutout CRC-32, ids) of one shard, cached per process."""
        if os.getpid() != self._pid:  # forked worker: never reuse the parent's maps
            self._handles = {}
            self._pid = os.getpid()
        got = self._handles.get(shard)
        if got is None:
            path = self.root / "shards" / shard
            try:
                with h5py.File(path, "r") as h:
                    ds = h["images"]
                    offset, shape, dtype = ds.id.get_offset(), ds.shape, ds.dtype
                    crc = np.asarray(h["crc32"][:], dtype=np.uint32)
                    ids = np.asarray(h["ids"].asstr()[:], dtype=object)  # UTF-8, whatever the characters
                if offset is None or dtype != np.dtype("<f4"):
                    raise OSError(f"images dataset is not contiguous little-endian float32 ({dtype})")
                mm = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)
            except (OSError, KeyError, ValueError) as exc:
                raise StoreCorruptError(f"cutout store {self.root}: cannot open shard {shard} ({exc})") from exc
            got = self._handles[shard] = (mm, crc, ids)
        return got

    def locate(self, ids: Sequence[Any]) -> np.ndarray:
        """Row numbers in :attr:`index` of ``ids``; KeyError naming the missing ids."""
        _ = self.index  # builds the id lookup
        assert self._pos is not None
        keys = np.asarray([str(i) for i in ids])
        rows = self._pos.get_indexer(keys)
        if (rows < 0).any():
            missing = keys[rows < 0]
            raise CutoutNotFoundError(f"cutout store {self.root}: {len(missing)} id(s) not stored, e.g. {[str(m) for m in missing[:5]]}")
        return rows

    def get(self, ids: Sequence[Any], out: np.ndarray | None = None) -> np.ndarray:
        """Cutouts for ``ids`` as float32 (n, 3, N, N) nanomaggies, in the order given."""
        rows = self.locate(ids)
        return self.get_rows(rows, out=out)

    def get_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Cutouts for index row numbers (fast path used by datasets)."""
        idx = self.index
        n = len(rows)
        if out is None:
            out = np.empty((n, len(self.bands), self.size, self.size), dtype=np.float32)
        shards = idx["shard"].to_numpy()[rows]
        offsets = idx["offset"].to_numpy()[rows]
        ids = idx["id"].to_numpy()[rows]
        for k in range(n):
            mm, crc, _ = self._shard(shards[k])
            off = int(offsets[k])
            if off >= mm.shape[0]:
                raise StoreCorruptError(f"cutout store {self.root}: shard {shards[k]} has no offset {off} "
                                        f"(cutout {ids[k]!r}); index and shard disagree")
            out[k] = mm[off]
            if self.check_crc and zlib.crc32(out[k]) != crc[off]:
                raise StoreCorruptError(
                    f"cutout store {self.root}: shard {shards[k]} offset {off} (cutout {ids[k]!r}) "
                    f"failed its CRC-32 checksum (corrupt shard)"
                )
        return out

    def __getitem__(self, cid: Any) -> np.ndarray:
        return self.get([cid])[0]

    def close(self) -> None:
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    # ------------------------------------------------------------ maintenance
    def orphans(self) -> list[Path]:
        """Shard files with no committed index file (left by a killed writer), and temp files."""
        committed = {f.stem for f in self._index_files()}
        out = [p for p in (self.root / "shards").glob("shard-*.h5") if p.stem not in committed]
        for sub in ("shards", "index", "failures"):
            out += list((self.root / sub).glob(".*.tmp"))
        return sorted(out)

    def repair(self) -> list[Path]:
        """Remove orphan shards and temp files; returns what was removed. Needs the write lock."""
        with self._lock():
            removed = self.orphans()
            for p in removed:
                p.unlink(missing_ok=True)
        if removed:
            log.info("cutout store %s: removed %d orphan file(s)", self.root, len(removed))
        return removed

    def verify(self, check_data: bool = True) -> dict:
        """Check every shard against its index (ids, counts) and, optionally, every checksum.

        Returns a report dict; raises :class:`StoreCorruptError` listing every problem found.
        """
        problems: list[str] = []
        idx = self.index
        for shard, grp in idx.groupby("shard", sort=True):
            try:
                mm, crc, stored_ids = self._shard(shard)
            except StoreCorruptError as exc:
                problems.append(str(exc))
                continue
            offs = grp["offset"].to_numpy()
            if offs.max(initial=-1) >= mm.shape[0]:
                problems.append(f"shard {shard}: index offsets exceed its {mm.shape[0]} cutouts")
                continue
            bad_ids = grp["id"].to_numpy() != stored_ids[offs]
            if bad_ids.any():
                problems.append(f"shard {shard}: {int(bad_ids.sum())} index id(s) disagree with the shard")
            if check_data:
                for off, cid in zip(offs, grp["id"], strict=True):
                    if zlib.crc32(np.ascontiguousarray(mm[int(off)])) != crc[int(off)]:
                        problems.append(f"shard {shard}: cutout {cid!r} at offset {off} failed its CRC-32 checksum")
        if self._unmarked_duplicates:
            problems.append(f"{len(self._unmarked_duplicates)} duplicate id(s) stored twice without being marked as "
                            f"replacements, e.g. {self._unmarked_duplicates[:5]}")
        orph = self.orphans()
        report = {"store": str(self.root), "n_cutouts": int(len(idx)), "n_shards": int(idx["shard"].nunique()),
                  "orphans": [str(p.name) for p in orph], "problems": problems, "ok": not problems}
        if problems:
            raise StoreCorruptError(f"cutout store {self.root}: {len(problems)} problem(s): " + "; ".join(problems[:10]))
        return report

    # ----------------------------------------------------------------- writes
    def _lock(self) -> contextlib.AbstractContextManager:
        """The store's single-writer lock (``.lock``); StoreBusyError while another process writes."""
        return exclusive_lock(self.root / ".lock", f"cutout store {self.root}: another process is writing to it",
                              StoreBusyError)

    @contextlib.contextmanager
    def writer(self, commit_every: int | None = None) -> Iterator[StoreWriter]:
        """Context manager yielding a :class:`StoreWriter`; buffered cutouts are committed on exit.

        On an exception (including KeyboardInterrupt) what was buffered is still committed,
        since every buffered cutout already passed validation.
        """
        with self._lock():
            self.reload()  # another process (or another store object) may have committed since we read the index
            w = StoreWriter(self, commit_every or self.shard_size)
            try:
                yield w
            finally:
                w.commit()
                self.reload()


def adopt_store(target: CutoutStore, other: str | os.PathLike,
                replace: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Move the committed cutouts and failure records of store ``other`` (same size and bands, same file
    system: a staging store a distributed fetch filled) into ``target``, renumbered after target's own
    commits, and remove ``other``; returns the ids adopted.

    Ids ``target`` already holds are refused (StoreError, nothing moved) unless they are in ``replace``,
    whose adopted copies are marked ``replaces``. Crash-safe in the store's own way: per shard, the shard
    file is moved, then target's index file for it written (its commit), then other's index file
    removed; an interrupted adoption leaves at worst an orphan shard in target (removed by
    :meth:`CutoutStore.repair`) and an index file in ``other`` whose shard is gone, which a re-run skips
    (those cutouts are not in target, so the next fetch requests them again)."""
    src = CutoutStore(other)
    if (src.size, src.bands) != (target.size, target.bands):
        raise StoreError(f"cannot adopt store {src.root} ({src.size} px, bands {src.bands}) into {target.root} "
                         f"({target.size} px, bands {target.bands})")
    files = src._index_files()
    adopted: list[str] = []
    with target.writer() as w:
        frames = [(f, pq.read_table(f).to_pandas()) for f in files]
        clash = sorted({str(i) for _, rows in frames for i in rows["id"].astype(str)} & w._known - set(replace))
        if clash:
            raise StoreError(f"cannot adopt store {src.root}: {len(clash)} of its id(s) are already in {target.root} "
                             f"(e.g. {clash[:3]}) and were not fetched as replacements")
        for f, rows in frames:
            shard = str(rows["shard"].iat[0])
            if not (src.root / "shards" / shard).is_file():
                log.warning("adopting %s: shard %s of %s is gone (an interrupted adoption moved it); its %d cutout(s) "
                            "will be fetched again", src.root, shard, f.name, len(rows))
                f.unlink()
                continue
            name = f"shard-{w._seq:06d}-{secrets.token_hex(4)}"
            os.replace(src.root / "shards" / shard, target.root / "shards" / f"{name}.h5")
            rows["shard"] = f"{name}.h5"
            ids = rows["id"].astype(str)
            rows["replaces"] = rows["replaces"].astype("boolean").fillna(False).astype(bool) | ids.isin(w._known)
            with atomic_path(target.root / "index" / f"{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp)
            f.unlink()
            w._known.update(ids)
            w._seq += 1
            adopted += ids.tolist()
        for f in sorted((src.root / "failures").glob("part-*.parquet")):
            os.replace(f, target.root / "failures" / f"part-{w._seq:06d}-{secrets.token_hex(4)}.parquet")
            w._seq += 1
    import shutil

    shutil.rmtree(src.root)
    target.reload()
    return adopted


class StoreWriter:
    """Appends validated cutouts to a store in shards; use via :meth:`CutoutStore.writer`."""

    def __init__(self, store: CutoutStore, commit_every: int):
        self.store = store
        self.commit_every = int(commit_every)
        self._pending = _Pending()
        # sequence numbers order every commit (shards, index files and failure records alike), so the
        # latest failure record of an id is the one in the highest-numbered file
        existing = (sorted((store.root / "shards").glob("shard-*.h5")) + store._index_files()
                    + sorted((store.root / "failures").glob("part-*.parquet")))
        seqs = [int(p.stem.split("-")[1]) for p in existing]
        self._seq = max(seqs, default=-1) + 1
        self._known = set(store.index["id"].astype(str))
        self.n_written = 0

    def __contains__(self, cid: object) -> bool:
        return str(cid) in self._known

    def add(self, cid: Any, cube: np.ndarray, ra: float, dec: float, replace: bool = False, **columns: Any) -> None:
        """Buffer one cutout (3, N, N) with its index columns; commits a shard when full.

        With ``replace`` an id already stored gets a new copy that supersedes the old one (marked
        ``replaces`` in the index; the old pixels stay in their shard until compacted)."""
        cid = str(cid)
        arr = np.asarray(cube)
        want = (len(self.store.bands), self.store.size, self.store.size)
        if arr.shape != want:
            raise ValueError(f"cutout {cid!r}: shape {arr.shape}, store {self.store.root} holds {want}")
        if arr.dtype.kind != "f":
            raise ValueError(f"cutout {cid!r}: dtype {arr.dtype} is not floating point")
        replaces = cid in self._known
        if replaces and not replace:
            raise ValueError(f"cutout {cid!r} is already in store {self.store.root}")
        self._known.add(cid)
        self._pending.ids.append(cid)
        self._pending.cubes.append(np.ascontiguousarray(arr, dtype=np.float32))
        row = {"id": cid, "ra": float(ra), "dec": float(dec)}
        row.update(columns)
        row["replaces"] = replaces
        self._pending.rows.append(row)
        if len(self._pending.ids) >= self.commit_every:
            self.commit()

    def add_failure(self, cid: Any, ra: float, dec: float, reason: str, **columns: Any) -> None:
        """Record a failed cutout (never stored as data)."""
        row = {"id": str(cid), "ra": float(ra), "dec": float(dec), "reason": str(reason), "time_utc": _now_utc()}
        row.update(columns)
        self._pending.failures.append(row)

    def commit(self) -> None:
        """Write buffered cutouts as one new shard (then its index file), and buffered failures."""
        p = self._pending
        self._pending = _Pending()
        token = secrets.token_hex(4)
        name = f"shard-{self._seq:06d}-{token}"
        if p.ids:
            shard_path = self.store.root / "shards" / f"{name}.h5"
            with atomic_path(shard_path) as tmp:
                block = np.stack(p.cubes).astype("<f4", copy=False)
                crc = np.array([zlib.crc32(c) for c in block], dtype=np.uint32)
                with h5py.File(tmp, "w") as h:
                    ds = h.create_dataset("images", data=block)  # contiguous: readers memory-map it
                    ds.attrs["units"] = "nanomaggy"
                    ds.attrs["bands"] = self.store.bands
                    ds.attrs["layout"] = "(n, band, y, x)"
                    h.create_dataset("crc32", data=crc)
                    h.create_dataset("ids", data=np.array(p.ids, dtype=h5py.string_dtype()))
            rows = pd.DataFrame(p.rows)
            rows.insert(1, "shard", f"{name}.h5")
            rows.insert(2, "offset", np.arange(len(rows), dtype=np.int64))
            rows.insert(3, "crc32", crc.astype(np.int64))
            with atomic_path(self.store.root / "index" / f"{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp)
            self.n_written += len(p.ids)
            log.debug("cutout store %s: committed %s with %d cutouts", self.store.root, name, len(p.ids))
        if p.failures:
            with atomic_path(self.store.root / "failures" / f"part-{self._seq:06d}-{token}.parquet") as tmp:
                pq.write_table(pa.Table.from_pandas(pd.DataFrame(p.failures), preserve_index=False), tmp)
        if p.ids or p.failures:
            self._seq += 1


def _effective_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per id from index rows in commit order: a row marked ``replaces`` supersedes the rows
    before it; any other repeat is an unmarked duplicate (ignored here, reported by verify)."""
    first = ~df["id"].duplicated(keep="first")
    rep = df["replaces"].astype("boolean").fillna(False).astype(bool) if "replaces" in df else pd.Series(False, index=df.index)
    candidate = first | rep
    unmarked = sorted(set(df.loc[~candidate, "id"]))
    eff = df[candidate]
    eff = eff[~eff["id"].duplicated(keep="last")]
    return eff.reset_index(drop=True), unmarked


def open_store(root: str | os.PathLike) -> CutoutStore:
    """Open an existing store (StoreError if ``root`` is not one)."""
    return CutoutStore(root)

