"""Training-set construction (published DR10 protocol): stage functions and two engines.

Public API::

    from lensaudit.catalog import CatalogConfig, build_catalog, verify_manifest
    summary = build_catalog(CatalogConfig(sweeps="mock/sweeps", candidates="mock/candidates.csv"))
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "build": ["build_catalog", "cutflow_table"],
    "candidates": ["CatalogInputError", "read_candidates"],
    "config": ["CatalogConfig", "SplitScheme"],
    "engines": ["LocalEngine", "SparkEngine", "spark_session"],
    "ingest": ["ingest_sweep"],
    "spatial": ["assign_split", "healpix_nested", "pixel_fraction"],
    "verify": ["format_report", "verify_manifest"],
})
