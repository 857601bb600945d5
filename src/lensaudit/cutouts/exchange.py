"""Import and export of cutouts in exchange formats.

* Import: the per-cutout ``.npz`` format of earlier DR10 lens studies - key ``cutout`` with
  shape (101, 101, 3) float32 in g,r,z order (height, width, band), scalar ``meta_*`` keys
  (``meta_galaxy_id``, ``meta_ra``, ``meta_dec``, ...). Loaded with ``allow_pickle=False``.
* Export: FITS in the cutout service's layout (:mod:`lensaudit.survey.cutout_fits`) or the
  same ``.npz`` format, for inspection and sharing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lensaudit.cutouts.qa import QAConfig, assess
from lensaudit.cutouts.store import CutoutStore
from lensaudit.errors import InputError
from lensaudit.survey.cutout_fits import cutout_fits_bytes
from lensaudit.survey.npz_cutout import CutoutFileError, read_npz_cutout
from lensaudit.utils.io import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    n_files: int = 0
    n_imported: int = 0
    n_already_stored: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def import_npz(paths: Iterable[str | os.PathLike], store: CutoutStore, qa_cfg: QAConfig = QAConfig()) -> ImportReport:
    """Import legacy ``.npz`` cutouts into ``store`` (QA applied; bad files reported, not stored)."""
    rep = ImportReport()
    with store.writer() as w:
        for p in paths:
            rep.n_files += 1
            p = Path(p)
            try:
                cube, meta = read_npz_cutout(p, store.size)
            except CutoutFileError as exc:
                rep.failures[str(p)] = str(exc)
                continue
            cid = str(meta.pop("galaxy_id", p.stem))
            if cid in w:
                rep.n_already_stored += 1
                continue
            try:
                ra, dec = float(meta.pop("ra")), float(meta.pop("dec"))
            except KeyError:
                rep.failures[str(p)] = f"{p}: no meta_ra/meta_dec keys"
                continue
            ok, reason, qa = assess(cube, qa_cfg)
            if not ok:
                rep.failures[str(p)] = f"{p}: failed QA: {reason}"
                continue
            meta = {f"meta_{k}": v for k, v in meta.items() if not k.startswith(("nan_", "has_"))}
            w.add(cid, cube, ra, dec, **qa, source="npz", url=str(meta.get("meta_cutout_url", "")),
                  layer=str(meta.get("meta_layer", "")), fetched_utc=str(meta.get("meta_timestamp", "")),
                  import_path=p.name, **meta)
            rep.n_imported += 1
    for msg in rep.failures.values():
        log.warning("import skipped %s", msg)
    return rep


def export_cutouts(store: CutoutStore, ids: Sequence[str], out_dir: str | os.PathLike, fmt: str = "fits") -> list[Path]:
    """Write chosen cutouts to ``out_dir`` as service-layout FITS or legacy npz; returns paths."""
    if fmt not in ("fits", "npz"):
        raise InputError(f"export format {fmt!r} is not one of 'fits', 'npz'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.locate(ids)
    cubes = store.get_rows(rows)
    idx = store.index.iloc[rows]
    written = []
    for cube, (_, row) in zip(cubes, idx.iterrows(), strict=True):
        safe = safe_file_stem(str(row["id"]))
        if fmt == "fits":
            target = out_dir / f"{safe}.fits"
            atomic_write_bytes(target, cutout_fits_bytes(cube, row["ra"], row["dec"], bands=store.bands))
        else:
            target = out_dir / f"{safe}.npz"
            meta = {f"meta_{k}": np.asarray(v) for k, v in row.items()
                    if k not in ("shard", "offset") and not k.startswith("meta_") and _scalar(v)}
            meta.update({k: np.asarray(v) for k, v in row.items() if k.startswith("meta_") and _scalar(v)})
            meta["meta_galaxy_id"] = np.asarray(str(row["id"]))
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, cutout=np.moveaxis(cube, 0, -1), **meta)
        written.append(target)
    return written


def safe_file_stem(cid: str) -> str:
    """A file name stem for an id: the id itself when it is already safe (letters, digits, ``-_.+``, not
    starting with a dot), else a sanitised form plus 8 hex digits of the id's SHA-256, so two ids never
    share a file (``a/b`` and ``a_b``) and no id escapes the folder (``../x``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in cid)
    if safe == cid and not cid.startswith(".") and cid:
        return cid
    return f"{safe.lstrip('.')[:80] or 'id'}-{hashlib.sha256(cid.encode('utf-8')).hexdigest()[:8]}"


def _scalar(v: object) -> bool:
    return isinstance(v, (str, int, float, bool, np.generic)) and not (isinstance(v, float) and np.isnan(v))
