"""Validation of the audit instrument: on universes where the truth is known but was not written by the injections'
hand, does the realism gate (which reads no truth) predict whether closure holds?

:func:`run_validation` runs the matrix (universes x families x injection seeds); :mod:`~lensaudit.validation.matrix`
holds the pre-registered rules as pure functions over tables.
"""

from lensaudit.validation.config import ValidationConfig, ValidationFamily, ValidationRules
from lensaudit.validation.matrix import cell_rows, format_matrix, outcome, summarize
from lensaudit.validation.run import check_config, run_validation

__all__ = ["ValidationConfig", "ValidationFamily", "ValidationRules", "cell_rows", "check_config", "format_matrix",
           "outcome", "run_validation", "summarize"]
