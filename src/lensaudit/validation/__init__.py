"""Validation of the audit instrument: on universes where the truth is known but was not written by the injections'
hand, does the realism gate (which reads no truth) predict whether closure holds?

:func:`run_validation` runs the matrix (universes x families x injection seeds); :mod:`~lensaudit.validation.matrix`
holds the pre-registered rules as pure functions over tables.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "config": ["ValidationConfig", "ValidationFamily", "ValidationRules"],
    "matrix": ["cell_rows", "format_matrix", "outcome", "summarize"],
    "run": ["check_config", "run_validation"],
})
