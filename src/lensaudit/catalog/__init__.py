"""Training-set construction (published DR10 protocol): stage functions and two engines.

Public API::

    from lensaudit.catalog import CatalogConfig, build_catalog, verify_manifest
    summary = build_catalog(CatalogConfig(sweeps="mock/sweeps", candidates="mock/candidates.csv"))
"""

from lensaudit.catalog.build import build_catalog, cutflow_table
from lensaudit.catalog.candidates import CatalogInputError, read_candidates
from lensaudit.catalog.config import CatalogConfig, SplitScheme
from lensaudit.catalog.engines import LocalEngine, SparkEngine, spark_session
from lensaudit.catalog.ingest import ingest_sweep
from lensaudit.catalog.spatial import assign_split, healpix_nested, pixel_fraction
from lensaudit.catalog.verify import format_report, verify_manifest

__all__ = ["CatalogConfig", "SplitScheme", "build_catalog", "cutflow_table", "CatalogInputError", "read_candidates",
           "LocalEngine", "SparkEngine", "spark_session", "ingest_sweep", "assign_split", "healpix_nested",
           "pixel_fraction", "verify_manifest", "format_report"]
