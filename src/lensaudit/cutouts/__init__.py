"""Cutout acquisition: the service client, the sharded store, QA, and exchange formats.

Public API::

    from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest, read_manifest
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import astropy or httpx)
__getattr__, __dir__, __all__ = attach(__name__, {
    "client": ["FetchConfig", "FetchReport", "cutout_url", "fetch_manifest"],
    "exchange": ["CutoutFileError", "export_cutouts", "import_npz", "read_npz_cutout"],
    "qa": ["QAConfig", "QA_FIELDS", "assess"],
    "store": ["CutoutStore", "StoreCorruptError", "StoreError", "open_store"],
}, reexports={"lensaudit.artifacts.manifest": ["ManifestError", "check_manifest", "read_manifest"]})
