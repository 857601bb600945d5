"""The stage order of the package, stated once.

A module may import from its own top-level package (``lensaudit.<name>``) and from packages
in *earlier* layers only; packages in one layer are siblings that know nothing of each other.
``tests/test_layers.py`` walks every import of every module (including imports inside
functions) and fails when one reaches a later layer or a sibling.
"""

from __future__ import annotations

#: Top-level modules and packages of ``lensaudit``, in pipeline order (earliest first).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "layers"),           # the error base class, this table
    ("utils",),                     # atomic I/O, hashing, seed streams, provenance, logging, display
    ("config", "configs"),          # typed YAML loading, bundled configs
    ("survey",),                    # the DR10 data model: units, columns, bits, geometry, formats
    ("reference",),                 # the real DR10 reference data shipped in the package, verified
    ("artifacts",),                 # the contract between stages: schemas, versions, places, operating point, ids
    ("lensing",),                   # lens physics: pure deflection and profile functions
    ("sources",),                   # source galaxies: procedural generator, stamp libraries (XDF), halves
    ("mock",),                      # the mock DR10 survey and its loopback cutout service
    ("catalog",),                   # training-set construction (local and Spark engines)
    ("cutouts",),                   # cutout client, sharded store, QA, exchange formats
    ("data",),                      # preprocessing, augmentation, datasets
    ("models",),                    # architecture registry
    ("train",),                     # training, checkpoints, scoring, meta-learner
    ("scoring",),                   # any lens finder: checkpoints, ONNX, TorchScript behind one scorer; export
    ("evaluate",),                  # metrics with intervals, strata, calibration, gates
    ("inject",),                    # injection engine
    ("selection", "realism"),       # selection function; realism gate and closure test
    ("ensemble",),                  # domain-specialised ensembles: members, combinations, diversity, yield
    ("report",),                    # the HTML audit report
    ("pipeline",),                  # resumable stages (skipped when their recorded inputs are unchanged)
    ("demo",),                      # the demo: every stage on the embedded mock survey
    ("validation",),                # the instrument's validation: universes x families x seeds (demo's stages)
    ("config_reference",),          # every configuration's keys, written from the typed models of every stage
    ("cli",),                       # the command line
    ("__main__",),                  # `python -m lensaudit`
)


def layer_of(name: str) -> int:
    """Layer index of a top-level module or package name of ``lensaudit``; KeyError if unlisted."""
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise KeyError(f"lensaudit.{name} is not in lensaudit.layers.LAYERS; add it where it belongs")
