"""Stage 5b: the selection function by injection-recovery on a grid, with intervals.

``run_selection(SelectionConfig)`` injects every family into host negatives of the audited splits,
scores them with the frozen checkpoint and writes per-cell completeness tables; the
:class:`SelectionFunction` reads one back and interpolates (never extrapolates). Closure against
the mock's truth is in :mod:`lensaudit.selection.closure`.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "config": ["SelectionConfig", "Thresholds"],
    "function": ["SelectionFunction", "completeness_table"],
    "grid": ["AXES", "AxisSpec", "Grid", "GridConfig"],
    "intervals": ["completeness_columns", "jeffreys_interval"],
})
