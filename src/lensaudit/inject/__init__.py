"""Stage 5a: the injection engine (lensed arcs on tensors added to survey cutouts).

``draw_parameters`` samples a population from stated priors (:class:`Priors`), a
:class:`SourceFamily` paints single sources, :class:`InjectionEngine` lenses, convolves and adds
them to host cutouts and records what it rendered. Needs torch.
"""

from lensaudit.inject.config import EngineConfig, FamilyConfig, Priors
from lensaudit.inject.draws import draw_parameters
from lensaudit.inject.engine import InjectionEngine
from lensaudit.inject.families import FAMILIES, SourceFamily, build_family
from lensaudit.inject.params import check_parameters, family_params, parameter_table
from lensaudit.sources.library import StampLibrary, StampLibraryError, write_stamp_library

__all__ = ["EngineConfig", "FAMILIES", "FamilyConfig", "InjectionEngine", "Priors", "SourceFamily", "StampLibrary",
           "StampLibraryError", "build_family", "check_parameters", "draw_parameters", "family_params",
           "parameter_table", "write_stamp_library"]
