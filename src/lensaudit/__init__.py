"""lensaudit: build, train and audit CNN strong-lens finders on DESI Legacy Imaging Surveys DR10.

The package is laid out by pipeline stage; each stage is a sub-package with a small public
API that knows nothing about the stages after it:

``survey`` (DR10 data model) -> ``mock`` (mock DR10 survey and loopback cutout service) ->
``cutouts`` (client, store, QA) -> later stages.
"""

__version__ = "0.1.0"
