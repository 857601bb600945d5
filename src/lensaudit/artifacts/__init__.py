"""The contract between stages: every artifact one stage hands another, with its schema, version and place.

* :mod:`~lensaudit.artifacts.tables`: the one Parquet writer and the table reader (errors name the file);
* :mod:`~lensaudit.artifacts.manifest`: manifests and predictions (columns, checks, readers);
* :mod:`~lensaudit.artifacts.schema` and :mod:`~lensaudit.artifacts.kinds`: each table's columns and each
  document's keys, with a version; stamped by the writers, checked by the readers;
* :mod:`~lensaudit.artifacts.layout`: where each artifact lives (:class:`Run` and one directory class per stage);
* :mod:`~lensaudit.artifacts.operating`: the one operating point (``p >= t``) every stage counts detections by;
* :mod:`~lensaudit.artifacts.identity`: object ids, HEALPix pixels and the split rule.
"""

from lensaudit.artifacts.identity import SplitRule, assign_split, healpix_nested, object_id, pixel_fraction
from lensaudit.artifacts.kinds import VERSIONS
from lensaudit.artifacts.layout import (
    CatalogDir,
    ClosureDir,
    EnsembleDir,
    EvalDir,
    InjectExamplesDir,
    MockSurveyDir,
    RealismDir,
    ReportDir,
    Run,
    SelectionRunDir,
    SparkScoresDir,
    TrainDir,
    TrueLensesDir,
    ValidationCellDir,
    ValidationDir,
    XdfDir,
)
from lensaudit.artifacts.manifest import (
    HEALPIX_PREFIX,
    MANIFEST_META_KEY,
    MAX_ID_LENGTH,
    PREDICTIONS_META_KEY,
    ManifestError,
    check_ids,
    check_manifest,
    check_predictions,
    healpix_column,
    manifest_columns,
    read_manifest,
    read_manifest_metadata,
    read_predictions,
)
from lensaudit.artifacts.operating import RULE, OperatingPoint, threshold_at_fpr
from lensaudit.artifacts.schema import (
    Column,
    DocSchema,
    TableSchema,
    read_artifact_meta,
    read_artifact_table,
    read_doc,
    write_artifact_table,
    write_doc,
)
from lensaudit.artifacts.tables import ArtifactError, read_table, read_table_metadata, write_table

__all__ = ["ArtifactError", "CatalogDir", "ClosureDir", "Column", "DocSchema", "EnsembleDir", "EvalDir",
           "HEALPIX_PREFIX", "InjectExamplesDir", "MANIFEST_META_KEY", "MAX_ID_LENGTH", "ManifestError", "MockSurveyDir", "OperatingPoint",
           "PREDICTIONS_META_KEY", "RULE", "RealismDir", "ReportDir", "Run", "SelectionRunDir", "SparkScoresDir", "SplitRule",
           "TableSchema", "TrainDir", "TrueLensesDir", "ValidationCellDir", "ValidationDir", "VERSIONS", "XdfDir", "assign_split", "check_ids", "check_manifest",
           "check_predictions", "healpix_column", "healpix_nested", "manifest_columns", "object_id", "pixel_fraction",
           "read_artifact_meta", "read_artifact_table", "read_doc", "read_manifest", "read_manifest_metadata",
           "read_predictions", "read_table", "read_table_metadata", "threshold_at_fpr", "write_artifact_table",
           "write_doc", "write_table"]
