"""Stage 5c: the realism gate - do injections look like real lenses to the detector?

:func:`probe_auc`, :func:`frechet_distance` and :func:`brightness_match` are pure functions over
arrays; :func:`run_realism` applies them per family of a selection run.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "gate": ["ProbeConfig", "RealismConfig", "format_realism", "run_realism"],
    "probe": ["brightness_match", "frechet_distance", "probe_auc"],
})
