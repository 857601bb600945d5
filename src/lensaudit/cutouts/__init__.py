"""Cutout acquisition: the service client, the sharded store, QA, and exchange formats.

Public API::

    from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest, read_manifest
"""

from lensaudit.artifacts import ManifestError, check_manifest, read_manifest
from lensaudit.cutouts.client import FetchConfig, FetchReport, cutout_url, fetch_manifest
from lensaudit.cutouts.exchange import CutoutFileError, export_cutouts, import_npz, read_npz_cutout
from lensaudit.cutouts.qa import QA_FIELDS, QAConfig, assess
from lensaudit.cutouts.store import CutoutStore, StoreCorruptError, StoreError, open_store

__all__ = [
    "CutoutStore", "StoreError", "StoreCorruptError", "open_store",
    "FetchConfig", "FetchReport", "fetch_manifest", "cutout_url",
    "QAConfig", "QA_FIELDS", "assess",
    "read_manifest", "check_manifest", "ManifestError",
    "import_npz", "export_cutouts", "read_npz_cutout", "CutoutFileError",
]
