"""Domain-specialised ensembles: one model per observing-condition or morphology domain, combined by
averaging, a domain gate or the meta-learner, with their diversity, uncertainty and yield measured.

Public API: :func:`run_ensemble` (the whole study), the pure pieces in :mod:`.domains`,
:mod:`.combine` and :mod:`.metrics`, and :class:`EnsembleConfig`."""

from lensaudit.ensemble.config import CombineConfig, DomainDef, EnsembleConfig

__all__ = ["CombineConfig", "DomainDef", "EnsembleConfig", "run_ensemble"]


def __getattr__(name: str):
    if name == "run_ensemble":  # torch and the training loop load only when a run is asked for
        from lensaudit.ensemble.run import run_ensemble

        return run_ensemble
    raise AttributeError(name)
