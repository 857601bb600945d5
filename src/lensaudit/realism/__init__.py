"""Stage 5c: the realism gate - do injections look like real lenses to the detector?

:func:`probe_auc`, :func:`frechet_distance` and :func:`brightness_match` are pure functions over
arrays; :func:`run_realism` applies them per family of a selection run.
"""

from lensaudit.realism.gate import ProbeConfig, RealismConfig, format_realism, run_realism
from lensaudit.realism.probe import brightness_match, frechet_distance, probe_auc

__all__ = ["ProbeConfig", "RealismConfig", "brightness_match", "format_realism", "frechet_distance", "probe_auc",
           "run_realism"]
