"""Where every artifact lives: one directory class per stage output and :class:`Run`, a run folder.

Stages, the demo, the report and the command line find each other's outputs only through these
classes; no other module spells a file name another stage writes (``tests/test_contract.py`` greps
for them). A run folder holds one sub-folder per stage, as ``lensaudit demo`` writes it::

    RUN/samples/store        real DR10 sample cutouts           RUN/score/predictions.parquet
    RUN/mock/survey          the mock survey (MockSurveyDir)    RUN/evaluate/         (EvalDir)
    RUN/catalog/             training set (CatalogDir)          RUN/shortcuts/
    RUN/fetch/store          cutout store                       RUN/selection/run     (SelectionRunDir)
    RUN/train/               training run (TrainDir)            RUN/selection/realism (RealismDir)
    RUN/check/               the mock's real-data check         RUN/selection/true_lenses, closure
    RUN/ensemble/            (EnsembleDir)                      RUN/report/           (ReportDir)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lensaudit.utils.io import exclusive_lock

#: Written by every stage run: the command, commit, versions, seeds.
RUN_INFO = "run_info.json"
#: The resolved config a stage ran with (YAML).
RESOLVED_CONFIG = "config.resolved.yaml"
#: The record of a demo stage (its inputs hash), written last.
STAGE_RECORD = "stage.json"
#: The lock file of an output folder (one writer at a time).
LOCK = ".lock"


@dataclass(frozen=True)
class _Dir:
    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    def __truediv__(self, name: str) -> Path:   # for files a stage keeps for itself
        return self.root / name

    def lock(self, what: str):
        """An exclusive lock on this output folder for the duration of a ``with`` block (the folder is created);
        a second writer gets a :class:`~lensaudit.errors.BusyError` naming ``what``, the folder and the holder."""
        self.root.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.root / LOCK, f"{what} {self.root}: another process is writing into it")

    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def resolved_config(self) -> Path:
        return self.root / RESOLVED_CONFIG


class MockSurveyDir(_Dir):
    """``lensaudit mock build``: sweeps, the candidate list, the truth (evaluation only), the stamp library."""

    survey_json = property(lambda self: self.root / "survey.json")
    readme = property(lambda self: self.root / "README.txt")
    bricks = property(lambda self: self.root / "bricks.parquet")
    candidates = property(lambda self: self.root / "candidates.csv")
    sweeps = property(lambda self: self.root / "sweeps")
    truth = property(lambda self: self.root / "truth" / "truth.parquet")
    sources = property(lambda self: self.root / "internal" / "sources.parquet")
    lenses = property(lambda self: self.root / "internal" / "lenses.parquet")
    artefacts = property(lambda self: self.root / "internal" / "artefacts.parquet")
    exposure = property(lambda self: self.root / "internal" / "exposure.npz")
    stamp_library = property(lambda self: self.root / "stamp_library" / "stamps.fits")
    #: the library half the true lenses' sources come from (a copy: the survey is self-contained)
    source_library = property(lambda self: self.root / "sources" / "library.fits")

    @property
    def required(self) -> tuple[Path, ...]:
        """The files a complete survey holds (``survey.json`` is written last)."""
        return (self.survey_json, self.bricks, self.candidates, self.truth, self.sources, self.lenses, self.exposure,
                self.artefacts)


class XdfDir(_Dir):
    """``lensaudit sources build-xdf``: the XDF stamp library and its build report."""

    library = property(lambda self: self.root / "xdf_stamps.fits")
    report = property(lambda self: self.root / "xdf_report.json")

    def half(self, name: str) -> str:
        """The library spec of one half, ``PATH:A`` or ``PATH:B``."""
        return f"{self.library}:{name}"


class CatalogDir(_Dir):
    """``lensaudit catalog build``: manifests per split scheme, cut flow, verification, evaluation sets."""

    def manifest(self, scheme: str = "70_15_15") -> Path:
        return self.root / f"manifest_{scheme}.parquet"

    def verify_json(self, scheme: str) -> Path:
        return self.root / f"verify_{scheme}.json"

    def verify_txt(self, scheme: str) -> Path:
        return self.root / f"verify_{scheme}.txt"

    def evalset(self, name: str) -> Path:
        return self.root / f"evalset_{name}.parquet"

    def evalset_report(self, name: str) -> Path:
        return self.root / f"evalset_{name}.json"

    positives = property(lambda self: self.root / "positives.parquet")
    cutflow = property(lambda self: self.root / "cutflow.json")
    shortfalls = property(lambda self: self.root / "shortfalls.csv")
    unmatched = property(lambda self: self.root / "unmatched_candidates.csv")
    sweeps_parquet = property(lambda self: self.root / "sweeps_parquet")


class TrainDir(_Dir):
    """``lensaudit train``: checkpoints, the metrics log."""

    best = property(lambda self: self.root / "best.pt")
    last = property(lambda self: self.root / "last.pt")
    metrics_log = property(lambda self: self.root / "metrics.jsonl")

    def epoch(self, n: int) -> Path:
        return self.root / f"epoch_{n:04d}.pt"

    def epochs(self) -> list[Path]:
        """The periodic checkpoints there are, by epoch."""
        return sorted(self.root.glob("epoch_*.pt"))


class SparkScoresDir(_Dir):
    """``lensaudit score --engine spark``: one folder per finished partition and the run's record."""

    record = property(lambda self: self.root / "scoring.json")

    def part(self, k: int) -> Path:
        return self.root / f"part={k}"

    def done(self, k: int) -> Path:
        """The marker a finished partition carries."""
        return self.part(k) / "_DONE"


class EvalDir(_Dir):
    """``lensaudit evaluate``: ``metrics.json`` (:class:`~lensaudit.evaluate.result.EvaluationResult`), strata, figures."""

    metrics = property(lambda self: self.root / "metrics.json")
    summary = property(lambda self: self.root / "summary.txt")
    gradcam = property(lambda self: self.root / "gradcam.npz")

    def table(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def strata(self, column: str) -> Path:
        return self.table(f"strata_{column}")

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def gallery(self, kind: str) -> Path:
        return self.figure(f"gallery_{kind}")


class SelectionRunDir(_Dir):
    """``lensaudit selection run``: hosts, injections, selection functions, marginals, operating points."""

    config = property(lambda self: self.root / "config.yaml")
    summary = property(lambda self: self.root / "summary.json")
    operating_points = property(lambda self: self.root / "thresholds.json")
    hosts = property(lambda self: self.root / "hosts.parquet")
    host_noise = property(lambda self: self.root / "host_noise.npz")
    marginals = property(lambda self: self.root / "marginals.parquet")
    injections = property(lambda self: self.root / "injections")
    figures = property(lambda self: self.root / "figures")

    def selection_function(self, family: str) -> Path:
        return self.root / f"selection_{family}.parquet"

    def selection_fits(self, family: str) -> Path:
        return self.root / f"selection_{family}.fits"

    def family_injections(self, family: str) -> Path:
        return self.injections / family

    def heatmap(self, family: str) -> Path:
        return self.figures / f"heatmap_{family}.png"

    marginals_figure = property(lambda self: self.figures / "marginals.png")

    # the offline exchange (``lensaudit selection export``): cutouts for a model that runs elsewhere
    exchange = property(lambda self: self.root / "exchange")
    exchange_manifest = property(lambda self: self.exchange / "exchange.json")
    exchange_ids = property(lambda self: self.exchange / "ids.csv")
    exchange_readme = property(lambda self: self.exchange / "README.md")

    exchange_predictions = property(lambda self: self.exchange / "predictions.parquet")

    def exchange_shard(self, group: str, k: int, family: str | None = None) -> Path:
        """``<group>/shard_<k>.npz`` of the exchange: group ``negatives``, ``positives`` or ``injections`` (then
        ``injections/<family>/shard_<k>.npz``)."""
        sub = self.exchange / group if family is None else self.exchange / group / family
        return sub / f"shard_{k:05d}.npz"


class InjectExamplesDir(_Dir):
    """``lensaudit inject``: a handful of injections to look at (cubes, their hosts, records, a gallery)."""

    injected = property(lambda self: self.root / "injected.fits")
    hosts = property(lambda self: self.root / "hosts.fits")
    records = property(lambda self: self.root / "records.parquet")
    gallery = property(lambda self: self.root / "gallery.png")


class RealismDir(_Dir):
    """``lensaudit realism``: the gate's table (``realism.parquet`` and ``.csv``), report (``realism.json``) and the
    real lenses with their measured arcs (``real_lenses.parquet``)."""

    table = property(lambda self: self.root / "realism.parquet")
    real_lenses = property(lambda self: self.root / "real_lenses.parquet")
    csv = property(lambda self: self.root / "realism.csv")
    report = property(lambda self: self.root / "realism.json")


class TrueLensesDir(_Dir):
    """``lensaudit selection mock-true-lenses`` (mock only): the true lenses outside training, scored."""

    table = property(lambda self: self.root / "true_lenses.parquet")
    store = property(lambda self: self.root / "store")


class ClosureDir(_Dir):
    """``lensaudit selection closure`` (mock only): true against predicted completeness."""

    summary = property(lambda self: self.root / "closure_summary.parquet")
    summary_csv = property(lambda self: self.root / "closure_summary.csv")
    bins = property(lambda self: self.root / "closure_bins.parquet")
    figure = property(lambda self: self.root / "closure.png")


class EnsembleDir(_Dir):
    """``lensaudit ensemble run``: members, combinations, metrics tables and figures."""

    summary = property(lambda self: self.root / "ensemble.json")
    audit_scores = property(lambda self: self.root / "audit_scores.parquet")
    domains = property(lambda self: self.root / "domains.parquet")
    domain_counts = property(lambda self: self.root / "domain_counts.csv")
    tables = property(lambda self: self.root / "tables")
    figures = property(lambda self: self.root / "figures")

    def member(self, name: str) -> Path:
        return self.root / "members" / name

    def member_manifest(self, name: str) -> Path:
        return self.member(name) / "manifest.parquet"

    def member_train(self, name: str) -> TrainDir:
        return TrainDir(self.member(name) / "train")

    def scores(self, name: str) -> Path:
        return self.root / "scores" / f"{name}.parquet"

    def meta_model(self, group: str) -> Path:
        return self.root / "meta" / f"{group}.pt"

    def meta_report(self, group: str) -> Path:
        return self.root / "meta" / f"{group}.json"

    def table(self, name: str, ext: str = "csv") -> Path:
        return self.tables / f"{name}.{ext}"

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    selection_run = property(lambda self: SelectionRunDir(self.root / "selection"))

    def selection_diff_figure(self, family: str) -> Path:
        return self.figure(f"selection_diff_{family}")


class ReportDir(_Dir):
    """``lensaudit report``: ``index.html``, its figures and tables."""

    index = property(lambda self: self.root / "index.html")
    figures = property(lambda self: self.root / "figures")
    tables = property(lambda self: self.root / "tables")


class Run(_Dir):
    """A run folder: one sub-folder per stage (as ``lensaudit demo`` writes it)."""

    #: the split scheme whose manifest the demo and the report use
    SCHEME = "70_15_15"

    def stage(self, name: str) -> Path:
        return self.root / name

    def stage_record(self, name: str) -> Path:
        return self.root / name / STAGE_RECORD

    samples_store = property(lambda self: self.root / "samples" / "store")
    xdf = property(lambda self: XdfDir(self.root / "sources" / "xdf"))
    samples_fits = property(lambda self: self.root / "samples" / "fits")
    mock = property(lambda self: MockSurveyDir(self.root / "mock" / "survey"))
    catalog = property(lambda self: CatalogDir(self.root / "catalog"))
    manifest = property(lambda self: self.catalog.manifest(self.SCHEME))
    store = property(lambda self: self.root / "fetch" / "store")
    train = property(lambda self: TrainDir(self.root / "train"))
    predictions = property(lambda self: self.root / "score" / "predictions.parquet")
    evaluation = property(lambda self: EvalDir(self.root / "evaluate"))
    shortcuts = property(lambda self: self.root / "shortcuts")
    shortcuts_report = property(lambda self: self.root / "shortcuts" / "shortcut_gates.txt")
    shortcuts_catalog = property(lambda self: CatalogDir(self.root / "shortcuts" / "catalog_host_matched"))
    shortcuts_store = property(lambda self: self.root / "shortcuts" / "store")
    selection = property(lambda self: SelectionRunDir(self.root / "selection" / "run"))
    realism = property(lambda self: RealismDir(self.root / "selection" / "realism"))
    realism_text = property(lambda self: self.root / "selection" / "realism.txt")
    true_lenses = property(lambda self: TrueLensesDir(self.root / "selection" / "true_lenses"))
    closure = property(lambda self: ClosureDir(self.root / "selection" / "closure"))
    closure_text = property(lambda self: self.root / "selection" / "closure.txt")
    check_text = property(lambda self: self.root / "check" / "check.txt")
    ensemble = property(lambda self: EnsembleDir(self.root / "ensemble"))
    report = property(lambda self: ReportDir(self.root / "report"))


class ValidationCellDir(_Dir):
    """One universe and injection seed of ``lensaudit validate``: its selection run, realism gate and closure."""

    selection = property(lambda self: SelectionRunDir(self.root / "run"))
    realism = property(lambda self: RealismDir(self.root / "realism"))
    closure = property(lambda self: ClosureDir(self.root / "closure"))


class ValidationDir(_Dir):
    """``lensaudit validate``: one run folder per universe (mock, catalog, fetch, train, score, true lenses), one
    cell folder per universe and injection seed, the XDF library, the matrix document, figures and the report."""

    xdf = property(lambda self: XdfDir(self.root / "xdf"))
    matrix = property(lambda self: self.root / "validation_matrix.json")
    figures = property(lambda self: self.root / "figures")
    report = property(lambda self: ReportDir(self.root / "report"))

    def universe(self, name: str) -> Run:
        return Run(self.root / "universes" / name)

    def cell(self, universe: str, seed: int) -> ValidationCellDir:
        return ValidationCellDir(self.root / "universes" / universe / "seeds" / f"seed_{seed}")

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

