"""Stage 5b: the selection function by injection-recovery on a grid, with intervals.

``run_selection(SelectionConfig)`` injects every family into host negatives of the audited splits,
scores them with the frozen checkpoint and writes per-cell completeness tables; the
:class:`SelectionFunction` reads one back and interpolates (never extrapolates). Closure against
the mock's truth is in :mod:`lensaudit.selection.closure`.
"""

from lensaudit.selection.config import SelectionConfig, Thresholds
from lensaudit.selection.function import SelectionFunction, completeness_table
from lensaudit.selection.grid import AXES, AxisSpec, Grid, GridConfig
from lensaudit.selection.intervals import completeness_columns, jeffreys_interval

__all__ = ["AXES", "AxisSpec", "Grid", "GridConfig", "SelectionConfig", "SelectionFunction", "Thresholds",
           "completeness_columns", "completeness_table", "jeffreys_interval"]
