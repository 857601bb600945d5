"""Stage 5a: the injection engine (lensed arcs on tensors added to survey cutouts).

``draw_parameters`` samples a population from stated priors (:class:`Priors`), a
:class:`SourceFamily` paints single sources, :class:`InjectionEngine` lenses, convolves and adds
them to host cutouts and records what it rendered. Needs torch.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch)
__getattr__, __dir__, __all__ = attach(__name__, {
    "config": ["EngineConfig", "FamilyConfig", "Priors"],
    "draws": ["draw_parameters"],
    "engine": ["InjectionEngine"],
    "families": ["FAMILIES", "SourceFamily", "build_family"],
    "params": ["check_parameters", "family_params", "parameter_table"],
}, reexports={"lensaudit.sources.library": ["StampLibrary", "StampLibraryError", "write_stamp_library"]})
