"""Source galaxies for lensing, below both the mock survey and the injection engine.

* :mod:`~lensaudit.sources.procedural`: the procedural generator (rich and simple source images) the mock
  has always rendered its lensed sources with;
* :mod:`~lensaudit.sources.library`: stamp libraries (the FITS format the ``stamps`` family and the mock read),
  split into disjoint halves A and B by a hash of each stamp's id;
* :mod:`~lensaudit.sources.xdf`: a stamp library cut from the Hubble eXtreme Deep Field image that scikit-image
  ships (real galaxy morphologies), with every assumption measured or stated.

Neither the mock nor the injection engine owns the other's sources: a universe takes its true lenses' sources
from one population and an injection family from another.
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "library": ["HALVES", "StampLibrary", "StampLibraryError", "curve_of_growth", "library_half", "split_spec",
              "write_stamp_library"],
    "procedural": ["SourceImage", "colour_weights"],
    "xdf": ["open_library"],
})
