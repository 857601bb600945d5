"""The schema of every table and document one stage hands another: columns (dtype kind, unit) and keys.

Bump a version when a consumer could misread an older file (a renamed or re-defined column or key);
readers refuse other versions with a message naming the file (:mod:`lensaudit.artifacts.schema`).
"""

from __future__ import annotations

from lensaudit.artifacts.schema import Column as C
from lensaudit.artifacts.schema import DocSchema, TableSchema

#: ``lensaudit score``: one row per scored cutout.
PREDICTIONS = TableSchema("predictions", 1, (
    C("id", "O", "", "object id"), C("logit", "f", "", "the model's logit"),
    C("probability", "f", "", "sigmoid(logit), in [0, 1]")),
    doc="optional column features: the penultimate activations (list of float32)",
    meta_key=b"lensaudit.predictions", owner="train")

_GRID_COLUMNS = tuple(C(f"{a}_{e}", "f", u) for a, u in (("theta_e", "arcsec"), ("psf_fwhm", "arcsec"),
                                                         ("depth", "AB mag"), ("arc_mag", "AB mag")) for e in ("lo", "hi"))
_PROPORTION = (C("n", "i", "", "injections"), C("k", "i", "", "detected (p >= t)"), C("completeness", "f"),
               C("lo68", "f"), C("hi68", "f"), C("lo95", "f"), C("hi95", "f"), C("status", "O"))

#: ``selection run``: completeness per cell of the 4-D grid and operating point, per family.
SELECTION_FUNCTION = TableSchema("selection_function", 2, (
    C("cell", "i"), *(C(f"i_{a}", "i") for a in ("theta_e", "psf_fwhm", "depth", "arc_mag")), *_GRID_COLUMNS,
    C("threshold", "O", "", "operating point name"), C("threshold_value", "f", "probability"), *_PROPORTION),
    meta_key=b"lensaudit.selection_function", owner="selection")

#: ``selection run``: completeness marginalised onto each grid axis, per family and operating point.
MARGINALS = TableSchema("selection_marginals", 2, (
    C("family", "O"), C("quantity", "O", "", "grid axis"), C("bin", "i"), C("lo", "f"), C("hi", "f"),
    C("median", "f"), C("threshold", "O"), *_PROPORTION), owner="selection")

#: ``selection run``: the hosts injections went into.
HOSTS = TableSchema("selection_hosts", 1, (
    C("id", "O"), C("split", "O"), C("host_psfsize_r", "f", "arcsec FWHM"), C("host_depth_r", "f", "AB mag 5-sigma"),
    C("host_mag_r", "f", "AB mag")), owner="selection")

#: ``selection run``: run summary (families, hosts, cells, figures).
SELECTION_SUMMARY = DocSchema("selection_summary", 2, ("families", "n_hosts", "cells", "config_tag"))

#: ``selection run``: the operating points (:class:`~lensaudit.artifacts.operating.OperatingPoint`) it counted at.
OPERATING_POINTS = DocSchema("operating_points", 1, ("points",))

#: ``realism``: one row per family, the gate's verdict and what it is based on.
REALISM = TableSchema("realism", 2, (
    C("family", "O"), C("planted", "b"), C("probe_auc", "f"), C("probe_auc_lo95", "f"), C("probe_auc_hi95", "f"),
    C("permutation_p", "f"), C("n_real", "i"), C("n_injected", "i"), C("verdict", "O", "", "GO or NO-GO"),
    C("rule", "O")), owner="realism")

#: ``realism``: the gate's config and per-family details.
REALISM_DOC = DocSchema("realism_report", 2, ("config", "families", "n_real_lenses"))

#: ``selection mock-true-lenses``: the mock's true lenses outside training, scored (closure only). Written with
#: ra, dec (deg), split, tier, arc_mag_g, arc_snr and logit besides; closure reads the columns below.
TRUE_LENSES = TableSchema("true_lenses", 2, (
    C("id", "O"), C("theta_e", "f", "arcsec"),
    C("arc_mag_r", "f", "AB mag"), C("psfsize_r", "f", "arcsec FWHM"), C("depth_r", "f", "AB mag 5-sigma"),
    C("beta_frac", "f"), C("arc_g_r", "f", "AB mag"), C("host_mag_r", "f", "AB mag"), C("probability", "f")), owner="selection")

#: ``selection closure``: true against predicted completeness per family, mode and operating point.
CLOSURE_SUMMARY = TableSchema("closure_summary", 2, (
    C("family", "O"), C("mode", "O", "", "raw or reweighted"), C("threshold", "O"), C("n_true_in_grid", "i"),
    C("chi2", "f"), C("dof", "i"), C("p_value", "f"), C("c_true", "f"), C("c_pred", "f"), C("diff", "f"),
    C("z", "f"), C("planted", "b"), C("gate_probe_auc", "f"), C("gate_verdict", "O")), owner="selection")

#: ``selection closure``: the same per bin of each grid axis.
CLOSURE_BINS = TableSchema("closure_bins", 2, (
    C("quantity", "O"), C("mode", "O"), C("threshold", "O"), C("family", "O"), C("n_true", "i"), C("k_true", "i"),
    C("c_true", "f"), C("c_pred", "f"), C("diff", "f"), C("z", "f")), owner="selection")

#: ``ensemble run``: rules, members, combinations, targets.
ENSEMBLE = DocSchema("ensemble", 1, ("rules", "members", "combinations", "threshold"))

ALL = (PREDICTIONS, SELECTION_FUNCTION, MARGINALS, HOSTS, SELECTION_SUMMARY, OPERATING_POINTS, REALISM, REALISM_DOC,
       TRUE_LENSES, CLOSURE_SUMMARY, CLOSURE_BINS, ENSEMBLE)
#: name -> version of every artifact; the demo's stage records include it, so a new version re-runs a stage.
VERSIONS = {s.name: s.version for s in ALL}
