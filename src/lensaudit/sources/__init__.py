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

from lensaudit.sources.library import (
    HALVES,
    StampLibrary,
    StampLibraryError,
    curve_of_growth,
    library_half,
    split_spec,
    write_stamp_library,
)
from lensaudit.sources.procedural import SourceImage, colour_weights
from lensaudit.sources.xdf import open_library

__all__ = ["HALVES", "SourceImage", "StampLibrary", "StampLibraryError", "colour_weights", "curve_of_growth", "open_library",
           "library_half", "split_spec", "write_stamp_library"]
