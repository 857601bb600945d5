"""The real DR10 reference data shipped inside the package, read through ``importlib.resources``.

The files (``data/``, listed with SHA-256, source and licence in ``data/files.csv``, described in
``data/README.md``): the 5,104 DESI lens candidates, the DR10 region and brick observing conditions,
and four real DR10 sample cutouts. Every consumer (the mock survey, its real-data check, the demo,
``reference:`` paths in configs) gets them from :func:`load_reference`, which checks them before any
stage runs: checksums against ``files.csv``, and the columns or arrays each consumer needs.

A user with newer files points ``$LENSAUDIT_SHARED_DATA`` (or ``--reference-data``) at a folder of
their own: the files found there replace the packaged ones by name, the others still come from the
package. Replaced files are checked for their columns (and against the folder's own ``files.csv``
when it has one); the origin and SHA-256 of every file in use are in :meth:`ReferenceData.provenance`.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lensaudit.errors import LensauditError
from lensaudit.utils.io import sha256_file

#: Environment variable naming a folder whose files replace the packaged reference data.
ENV = "LENSAUDIT_SHARED_DATA"
#: Prefix of a config value that names a reference file, e.g. ``reference:desi_lens_candidates.csv``.
URI_PREFIX = "reference:"
#: The table of the packaged files (path, sha256, bytes, kind, source, licence, description).
FILES_TABLE = "files.csv"

CANDIDATES = "desi_lens_candidates.csv"
REGION_CONDITIONS = "dr10_region_conditions.csv"
BRICK_CONDITIONS = "dr10_brick_conditions.csv"
SAMPLE_CUTOUTS = "dr10_sample_cutouts"

#: Columns each CSV must hold for the code that reads it.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    CANDIDATES: ("name", "ra", "dec", "zlens", "type", "grading", "ref"),
    REGION_CONDITIONS: ("region_id", "total_area_deg2", "total_n_gal", "dec_center_deg", "median_psf_r_arcsec",
                        "median_psfdepth_r", "median_ebv"),
    BRICK_CONDITIONS: ("psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_g", "psfdepth_r", "psfdepth_z", "ebv"),
}
#: ``meta_*`` scalars of a sample cutout that the real-data check reads.
SAMPLE_META = ("nobs_z",)


class ReferenceDataError(LensauditError, ValueError):
    """Reference data that is missing, altered or lacks what its consumers need."""


@dataclass(frozen=True)
class ReferenceFile:
    """One reference file in use: its name (relative path), location, origin and SHA-256."""

    name: str
    path: Path
    origin: str  # "package" or "override"
    sha256: str


@dataclass(frozen=True)
class ReferenceData:
    """The verified reference files in use, keyed by their relative path."""

    files: dict[str, ReferenceFile]
    override: Path | None = None

    def path(self, name: str) -> Path:
        """Location of the file ``name`` (a relative path such as ``dr10_region_conditions.csv``)."""
        try:
            return self.files[name].path
        except KeyError:
            raise ReferenceDataError(f"no reference file {name!r}; known: {', '.join(sorted(self.files))}") from None

    @property
    def sample_cutouts(self) -> list[Path]:
        """The real DR10 sample cutouts (legacy ``.npz``), sorted by name."""
        return [f.path for n, f in sorted(self.files.items()) if n.startswith(SAMPLE_CUTOUTS + "/")]

    def provenance(self) -> dict:
        """Per file: origin, path and SHA-256; plus the override folder (or None)."""
        return {"override": str(self.override) if self.override else None,
                "files": {n: {"origin": f.origin, "path": str(f.path), "sha256": f.sha256}
                          for n, f in sorted(self.files.items())}}

    def describe(self) -> str:
        """One line saying where the data came from."""
        over = sorted(n for n, f in self.files.items() if f.origin == "override")
        where = f"package ({package_dir()})"
        if not over:
            return f"reference data: {where}, {len(self.files)} files, checksums verified"
        return (f"reference data: {len(over)} of {len(self.files)} files from {self.override} ({', '.join(over)}), "
                f"the rest from the {where}")


def package_dir() -> Path:
    """The folder of the packaged reference files (a real directory in a wheel or an editable install)."""
    d = resources.files(__name__) / "data"
    if not isinstance(d, Path):   # a zipped install: not supported, the files must be on disk
        raise ReferenceDataError(f"lensaudit's reference data is not on a file system ({d}); install the wheel "
                                 "unpacked (pip does)")
    return d


def _read_table(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReferenceDataError(f"reference table {path}: cannot read ({exc.strerror or exc})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"path", "sha256"} <= set(rows[0]):
        raise ReferenceDataError(f"reference table {path}: needs the columns path and sha256")
    return rows


def file_table() -> list[dict[str, str]]:
    """The packaged ``files.csv``: one dict per file (path, sha256, bytes, kind, source, licence, description)."""
    return _read_table(package_dir() / FILES_TABLE)


def check_file(name: str, path: Path) -> list[str]:
    """What is wrong with the reference file ``name`` at ``path`` for its consumers (empty: nothing)."""
    if not path.is_file():
        return [f"{path}: missing"]
    if name in REQUIRED_COLUMNS:
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
                has_row = next(fh, None) is not None
        except (OSError, UnicodeDecodeError) as exc:
            return [f"{path}: not a readable CSV ({exc})"]
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in header]
        problems = [f"{path}: missing column(s) {', '.join(missing)}"] if missing else []
        return problems + ([] if has_row else [f"{path}: no data rows"])
    if name.startswith(SAMPLE_CUTOUTS + "/"):
        from lensaudit.survey.npz_cutout import read_npz_cutout

        try:
            _, meta = read_npz_cutout(path)
        except LensauditError as exc:
            return [str(exc)]
        missing = [k for k in SAMPLE_META if k not in meta]
        return [f"{path}: missing meta_{', meta_'.join(missing)}"] if missing else []
    return []


def _override_files(folder: Path) -> dict[str, Path]:
    """Files of ``folder`` that replace packaged ones: same names; sample cutouts as a whole set."""
    found = {n: folder / n for n in REQUIRED_COLUMNS if (folder / n).is_file()}
    samples = sorted((folder / SAMPLE_CUTOUTS).glob("*.npz"))
    found.update({f"{SAMPLE_CUTOUTS}/{p.name}": p for p in samples})
    return found


def _override_dir(override: str | os.PathLike | None) -> Path | None:
    if override is None:
        env = os.environ.get(ENV)
        if not env:
            return None
        override, how = env, f"${ENV}"
    else:
        how = "--reference-data"
    folder = Path(override).expanduser()
    if not folder.is_dir():
        raise ReferenceDataError(f"reference data override {folder} (from {how}): no such folder")
    return folder


def load_reference(override: str | os.PathLike | None = None) -> ReferenceData:
    """The reference data in use, verified; ``override`` (else ``$LENSAUDIT_SHARED_DATA``) replaces files by name.

    Raises :class:`ReferenceDataError` naming the file and the problem: a packaged file missing or with
    another SHA-256 than ``files.csv`` states, an override folder that does not exist or holds none of
    the reference files, a CSV without the columns its consumers read, a sample cutout of the wrong shape.
    """
    pkg = package_dir()
    problems: list[str] = []
    files: dict[str, ReferenceFile] = {}
    folder = _override_dir(override)
    replaced = _override_files(folder) if folder else {}
    if folder is not None and not replaced:
        raise ReferenceDataError(f"reference data override {folder}: holds none of the reference files "
                                 f"({', '.join(REQUIRED_COLUMNS)}, {SAMPLE_CUTOUTS}/*.npz)")
    own = {r["path"]: r["sha256"] for r in _read_table(folder / FILES_TABLE)} if folder and (
        folder / FILES_TABLE).is_file() else {}
    samples_replaced = any(n.startswith(SAMPLE_CUTOUTS + "/") for n in replaced)
    for row in file_table():
        name = row["path"]
        if name in replaced or (samples_replaced and name.startswith(SAMPLE_CUTOUTS + "/")):
            continue
        path = pkg / name
        if not path.is_file():
            problems.append(f"{path}: missing from the installed package")
            continue
        digest = sha256_file(path)
        if digest != row["sha256"]:
            problems.append(f"{path}: SHA-256 {digest[:16]}... differs from {FILES_TABLE}'s {row['sha256'][:16]}... "
                            "(altered or corrupted; reinstall lensaudit)")
            continue
        files[name] = ReferenceFile(name, path, "package", digest)
    for name, path in replaced.items():
        digest = sha256_file(path)
        if name in own and own[name] != digest:
            problems.append(f"{path}: SHA-256 {digest[:16]}... differs from {folder / FILES_TABLE}'s {own[name][:16]}...")
            continue
        files[name] = ReferenceFile(name, path, "override", digest)
    for name, f in files.items():
        problems.extend(check_file(name, f.path))
    if not any(n.startswith(SAMPLE_CUTOUTS + "/") for n in files) and not problems:
        problems.append(f"no sample cutouts ({SAMPLE_CUTOUTS}/*.npz)")
    if problems:
        raise ReferenceDataError("reference data: " + "; ".join(problems))
    return ReferenceData(files, folder)


def resolve_path(value: str, reference: ReferenceData | None = None) -> str:
    """``reference:NAME`` -> the path of that reference file (verified); any other value unchanged."""
    if not value.startswith(URI_PREFIX):
        return value
    return str((reference or load_reference()).path(value[len(URI_PREFIX):]))
