"""The contract between stages: every artifact one stage hands another, with its schema, version and place.

* :mod:`~lensaudit.artifacts.tables`: the one Parquet writer and the table reader (errors name the file);
* :mod:`~lensaudit.artifacts.manifest`: manifests and predictions (columns, checks, readers);
* :mod:`~lensaudit.artifacts.schema` and :mod:`~lensaudit.artifacts.kinds`: each table's columns and each
  document's keys, with a version; stamped by the writers, checked by the readers;
* :mod:`~lensaudit.artifacts.layout`: where each artifact lives (:class:`Run` and one directory class per stage);
* :mod:`~lensaudit.artifacts.operating`: the one operating point (``p >= t``) every stage counts detections by;
* :mod:`~lensaudit.artifacts.identity`: object ids, HEALPix pixels and the split rule.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "identity": ["SplitRule", "assign_split", "healpix_nested", "object_id", "pixel_fraction"],
    "kinds": ["VERSIONS"],
    "layout": ["CatalogDir", "ClosureDir", "EnsembleDir", "EvalDir", "InjectExamplesDir", "MockSurveyDir",
              "RealismDir", "ReportDir", "Run", "SelectionRunDir", "SparkScoresDir", "TrainDir", "TrueLensesDir",
              "ValidationCellDir", "ValidationDir", "XdfDir"],
    "manifest": ["HEALPIX_PREFIX", "MANIFEST_META_KEY", "MAX_ID_LENGTH", "ManifestError", "PREDICTIONS_META_KEY",
              "check_ids", "check_manifest", "check_predictions", "healpix_column", "manifest_columns",
              "read_manifest", "read_manifest_metadata", "read_predictions"],
    "operating": ["OperatingPoint", "RULE", "threshold_at_fpr"],
    "schema": ["Column", "DocSchema", "TableSchema", "read_artifact_meta", "read_artifact_table", "read_doc",
              "write_artifact_table", "write_doc"],
    "tables": ["ArtifactError", "read_table", "read_table_metadata", "write_table"],
})
