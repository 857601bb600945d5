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
SELECTION_SUMMARY = DocSchema("selection_summary", 3, ("families", "n_hosts", "cells", "config_tag"))

#: ``selection run``: the operating points (:class:`~lensaudit.artifacts.operating.OperatingPoint`) it counted at.
OPERATING_POINTS = DocSchema("operating_points", 1, ("points",))

#: ``realism``: one row per family, the gate's verdict and what it is based on.
REALISM = TableSchema("realism", 3, (
    C("family", "O"), C("planted", "b"), C("probe_auc", "f"), C("probe_auc_lo95", "f"), C("probe_auc_hi95", "f"),
    C("permutation_p", "f", "", "probe refitted on permuted labels"), C("null_q95", "f"),
    C("auc_mde80", "f", "", "smallest AUC detected with 80 percent power"),
    C("floor_injections", "f"), C("floor_real_halves", "f"), C("verdict_stability", "f"),
    C("score_shift", "f", "", "P(injection scored above a real lens)"),
    C("n_real", "i"), C("n_injected", "i"), C("verdict", "O", "", "GO or NO-GO"),
    C("rule", "O")), owner="realism")

#: ``realism``: the real lenses the gate compared, with their arcs measured from the pixels (no truth).
REALISM_LENSES = TableSchema("realism_real_lenses", 1, (
    C("id", "O"), C("probability", "f"), C("meas_arc_mag_r", "f", "AB mag"), C("meas_arc_g_r", "f", "AB mag"),
    C("meas_arc_snr_r", "f"), C("meas_arc_radius", "f", "arcsec"), C("meas_arc_area", "f", "arcsec^2"),
    C("sky_sigma_r", "f", "nanomaggies")), owner="realism")

#: ``realism``: the gate's config and per-family details.
REALISM_DOC = DocSchema("realism_report", 3, ("config", "families", "details", "n_real_lenses"))

#: ``selection mock-true-lenses``: the mock's true lenses outside training, scored (closure only). Written with
#: ra, dec (deg), split, tier, arc_mag_g, arc_snr, beta_frac, arc_g_r, host_mag_r and logit besides (for the
#: validation's diagnostics of prior coverage); closure reads the columns below.
TRUE_LENSES = TableSchema("true_lenses", 3, (
    C("id", "O"), C("theta_e", "f", "arcsec"),
    C("arc_mag_r", "f", "AB mag"), C("psfsize_r", "f", "arcsec FWHM"), C("depth_r", "f", "AB mag 5-sigma"),
    C("probability", "f")), owner="selection")

#: ``selection closure``: true against predicted completeness per family, mode and operating point.
CLOSURE_SUMMARY = TableSchema("closure_summary", 3, (
    C("family", "O"), C("threshold", "O"), C("n_true_in_grid", "i"), C("n_true_covered", "i"),
    C("c_true", "f"), C("c_inj", "f"), C("diff", "f", "", "c_inj - c_true (primary statistic)"), C("se", "f"),
    C("lo95", "f"), C("hi95", "f"), C("z", "f"), C("p_value", "f"), C("mde80", "f", "", "2.80 se"),
    C("chi2", "f"), C("dof", "i"), C("chi2_p", "f"), C("library_bootstrap", "b"),
    C("planted", "b"), C("gate_probe_auc", "f"), C("gate_p", "f"), C("gate_verdict", "O")), owner="selection")

#: ``selection closure``: the same per bin of each grid axis.
CLOSURE_BINS = TableSchema("closure_bins", 3, (
    C("quantity", "O"), C("threshold", "O"), C("family", "O"), C("n_true", "i"), C("k_true", "i"),
    C("c_true", "f"), C("c_inj", "f"), C("diff", "f"), C("se", "f"), C("z", "f")), owner="selection")

#: ``validate``: one row per cell (universe, family, injection seed): the gate beside the closure, and the outcome.
VALIDATION_CELLS = TableSchema("validation_cells", 1, (
    C("universe", "O"), C("family", "O"), C("seed", "i"), C("planted", "b"),
    C("c_true", "f"), C("c_inj", "f"), C("delta", "f", "", "c_inj - c_true"), C("delta_se", "f"),
    C("delta_lo95", "f"), C("delta_hi95", "f"), C("delta_p", "f"), C("delta_mde80", "f"), C("n_true", "i"),
    C("probe_auc", "f"), C("probe_auc_lo95", "f"), C("probe_auc_hi95", "f"), C("gate_p", "f"), C("null_q95", "f"),
    C("auc_mde80", "f"), C("floor_injections", "f"), C("floor_real_halves", "f"), C("verdict_stability", "f"),
    C("score_shift", "f"), C("n_real", "i"), C("verdict", "O"),
    C("closure_holds", "b"), C("closure_undecided", "b"), C("agrees", "?", "", "True, False or None (no verdict)")),
    owner="validation")

#: ``validate``: the matrix of universes x families x injection seeds, its pre-registered rules and summary.
VALIDATION_MATRIX = DocSchema("validation_matrix", 1, ("config", "rules", "universes", "cells", "summary"))

#: ``ensemble run``: rules, members, combinations, targets.
ENSEMBLE = DocSchema("ensemble", 1, ("rules", "members", "combinations", "threshold"))

ALL = (PREDICTIONS, SELECTION_FUNCTION, MARGINALS, HOSTS, SELECTION_SUMMARY, OPERATING_POINTS, REALISM, REALISM_LENSES,
       REALISM_DOC, TRUE_LENSES, CLOSURE_SUMMARY, CLOSURE_BINS, VALIDATION_CELLS, VALIDATION_MATRIX,
       ENSEMBLE)
#: name -> version of every artifact; the demo's stage records include it, so a new version re-runs a stage.
VERSIONS = {s.name: s.version for s in ALL}
