"""Concurrent, polite, resumable client for the Legacy Survey ``fits-cutout`` service.

* Requests ``{service}?ra=..&dec=..&size=101&layer=ls-dr10&pixscale=0.262&bands=grz`` (the
  real URL form, spec 3.2) with at most ``concurrency`` in flight and at most ``rate_per_s``
  started per second (a token bucket shared by all workers).
* Retries timeouts, connection errors, HTTP 429 and 5xx, and truncated/corrupt FITS with
  exponential backoff (``backoff_base_s * 2**attempt``, capped, honouring ``Retry-After``).
* Validates every cutout (shape, bands, NaN fractions, all-zero bands; :mod:`.qa`).
* Writes valid cutouts to a :class:`~lensaudit.cutouts.store.CutoutStore` with provenance
  (URL, layer, UTC time, HTTP status, attempts); failures are recorded with their reason and
  never stored as data. A re-run fetches only what is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Literal
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from lensaudit.artifacts import check_manifest
from lensaudit.cutouts.qa import QAConfig, assess
from lensaudit.cutouts.store import CutoutStore
from lensaudit.errors import LensauditError
from lensaudit.survey.constants import CUTOUT_SIZE, DEFAULT_LAYER, DEFAULT_SERVICE_URL, PIXEL_SCALE_ARCSEC
from lensaudit.survey.cutout_fits import CutoutFormatError, read_cutout_fits
from lensaudit.survey.geometry import angular_separation_arcsec
from lensaudit.utils.signals import sigterm_as_interrupt

log = logging.getLogger(__name__)

#: Index columns the client writes; manifest columns with these names get a ``manifest_`` prefix.
RESERVED = {"id", "shard", "offset", "ra", "dec", "url", "layer", "fetched_utc", "http_status", "attempts", "source"}


class FetchConfig(BaseModel):
    """Settings of a cutout fetch (YAML-loadable; unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    service_url: str = DEFAULT_SERVICE_URL
    layer: str = DEFAULT_LAYER
    size_pix: int = Field(CUTOUT_SIZE, ge=8, le=512)
    pixscale_arcsec: float = Field(PIXEL_SCALE_ARCSEC, gt=0)
    bands: str = "grz"
    concurrency: int = Field(4, ge=1, le=64)
    rate_per_s: float = Field(5.0, gt=0, description="polite default: at most 5 requests started per second")
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_base_s: float = Field(2.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    commit_every: int = Field(512, ge=1, description="cutouts per committed shard during a fetch")
    retry_failed: bool = Field(True, description="re-try ids whose earlier fetch failed")
    moved: Literal["error", "refetch", "keep"] = Field(
        "error", description="a stored id whose manifest ra/dec moved by more than moved_tolerance_arcsec: stop "
                             "with an error, re-fetch it (the new cutout replaces the old), or keep the old one")
    moved_tolerance_arcsec: float = Field(0.05, gt=0, description="largest ra/dec change treated as the same stamp")
    max_response_mb: float = Field(16.0, gt=0, description="responses larger than this are refused unread "
                                                           "(a 101x101 g,r,z cutout is about 0.13 MB)")
    user_agent: str = "lensaudit (https://github.com/lensaudit)"


class MovedCoordinatesError(LensauditError, ValueError):
    """Stored cutouts were cut at other coordinates than the manifest now gives (fetch ``moved='error'``)."""


@dataclass
class FetchReport:
    """What a fetch did (counts, failure reasons, timing)."""

    n_manifest: int = 0
    n_already_stored: int = 0
    n_moved: int = 0
    n_replaced: int = 0
    n_skipped_failed: int = 0
    n_requested: int = 0
    n_stored: int = 0
    n_failed: int = 0
    n_retries: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rate_per_s(self) -> float:
        return self.n_requested / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rate_per_s"] = self.rate_per_s
        return d


class RateLimiter:
    """Thread-safe limiter: successive acquisitions are at least 1/rate seconds apart."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


def cutout_url(cfg: FetchConfig, ra: float, dec: float) -> str:
    """The service URL for one cutout (the real ``fits-cutout`` query form)."""
    q = urlencode({"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "size": cfg.size_pix, "layer": cfg.layer,
                   "pixscale": cfg.pixscale_arcsec, "bands": cfg.bands})
    return f"{cfg.service_url}?{q}"


@dataclass
class _Result:
    cid: str
    ra: float
    dec: float
    url: str
    cube: np.ndarray | None
    status: int | None
    attempts: int
    reason: str
    qa: dict
    fetched_utc: str
    extra: dict


_RETRY_STATUS = {429, 500, 502, 503, 504}
_RETRY_FORMAT = {"truncated", "corrupt", "empty"}


def _backoff(cfg: FetchConfig, attempt: int, retry_after: str | None) -> float:
    delay = min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt))
    if retry_after:
        try:
            delay = min(cfg.backoff_max_s, max(delay, float(retry_after)))
        except ValueError:
            pass
    return delay


def fetch_one(client: httpx.Client, cfg: FetchConfig, cid: str, ra: float, dec: float,
              limiter: RateLimiter, qa_cfg: QAConfig, extra: dict | None = None,
              sleep: Callable[[float], None] = time.sleep) -> _Result:
    """Fetch and validate one cutout with retries; never raises for service or data faults."""
    url = cutout_url(cfg, ra, dec)
    cap = int(cfg.max_response_mb * 2**20)
    status: int | None = None
    reason = ""
    retry_after: str | None = None
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            sleep(_backoff(cfg, attempt - 1, retry_after))
        retry_after = None
        limiter.acquire()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            status, headers, body, too_large = _get_capped(client, url, cap)
        except httpx.TimeoutException as exc:
            status, reason = None, f"timeout: {type(exc).__name__}"
            continue
        except httpx.TransportError as exc:
            status, reason = None, f"transport: {type(exc).__name__}: {exc}"
            continue
        if too_large:
            reason = f"too_large: response larger than {cfg.max_response_mb:g} MB (max_response_mb); not read"
            break
        if status in _RETRY_STATUS:
            retry_after = headers.get("Retry-After")
            reason = f"http_{status}"
            continue
        text = body[:120].decode("utf-8", "replace")
        if status != 200:
            reason = f"http_{status}: {text!r}"
            break
        ctype = headers.get("content-type", "")
        if "fits" not in ctype and not body.startswith(b"SIMPLE"):
            # e.g. the real service's plain-text "no such layer" answer with status 200
            reason = f"not_fits: content-type {ctype!r}: {text!r}"
            break
        try:
            cube, _ = read_cutout_fits(body, cfg.size_pix, cfg.bands, source=f"cutout {cid} ({url})", header=False)
        except CutoutFormatError as exc:
            reason = f"{exc.reason}: {exc}"
            if exc.reason in _RETRY_FORMAT:
                continue
            break
        ok, qa_reason, qa = assess(cube, qa_cfg, tuple(cfg.bands))
        if not ok:
            return _Result(cid, ra, dec, url, None, status, attempt + 1, qa_reason, qa, stamp, extra or {})
        return _Result(cid, ra, dec, url, cube, status, attempt + 1, "", qa, stamp, extra or {})
    return _Result(cid, ra, dec, url, None, status, attempt + 1, reason or "unknown", {},
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), extra or {})


def _get_capped(client: httpx.Client, url: str, cap: int) -> tuple[int, httpx.Headers, bytes, bool]:
    """(status, headers, body, too_large): the body is read only up to ``cap`` bytes, never more."""
    with client.stream("GET", url) as resp:
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return resp.status_code, resp.headers, b"", True
        chunks, n = [], 0
        for chunk in resp.iter_bytes():
            n += len(chunk)
            if n > cap:
                return resp.status_code, resp.headers, b"", True
            chunks.append(chunk)
        return resp.status_code, resp.headers, b"".join(chunks), False


def _extra_columns(row: dict) -> dict:
    return {(f"manifest_{k}" if k in RESERVED else k): v for k, v in row.items() if k not in ("id", "ra", "dec")}


def plan_fetch(manifest: pd.DataFrame, store: CutoutStore, cfg: FetchConfig) -> tuple[pd.DataFrame, set[str], FetchReport]:
    """What a fetch of ``manifest`` into ``store`` has to request: (rows to fetch, ids whose stored copy they
    replace, a report with the counts so far). Stored ids are skipped; ids stored at moved coordinates are an
    error, re-fetched or kept per ``cfg.moved``; earlier failures are skipped unless ``cfg.retry_failed``."""
    manifest = check_manifest(manifest, source="manifest")
    rep = FetchReport(n_manifest=len(manifest))
    ids = manifest["id"].astype(str)
    idx = store.index.set_index("id")
    stored = ids.isin(idx.index).to_numpy()
    replace: set[str] = set()
    if stored.any() and {"ra", "dec"} <= set(idx.columns):
        old = idx.loc[ids[stored], ["ra", "dec"]]
        sep = angular_separation_arcsec(manifest["ra"].to_numpy(float)[stored], manifest["dec"].to_numpy(float)[stored],
                                        old["ra"].to_numpy(float), old["dec"].to_numpy(float))
        moved = sep > cfg.moved_tolerance_arcsec
        rep.n_moved = int(moved.sum())
        if moved.any():
            moved_ids = ids[stored][moved].tolist()
            ex = ", ".join(f"{i!r} ({d:.4g} arcsec)" for i, d in zip(moved_ids[:5], sep[moved][:5], strict=False))
            if cfg.moved == "error":
                raise MovedCoordinatesError(
                    f"store {store.root}: {len(moved_ids)} stored cutout(s) were cut at other coordinates than the "
                    f"manifest gives (more than {cfg.moved_tolerance_arcsec:g} arcsec), e.g. {ex}; re-fetch them "
                    f"(--moved refetch) or keep the stored stamps (--moved keep)")
            if cfg.moved == "refetch":
                replace = set(moved_ids)
                stored[np.flatnonzero(stored)[moved]] = False
            else:
                log.warning("keeping %d stored cutout(s) whose manifest coordinates moved, e.g. %s", len(moved_ids), ex)
    todo = manifest[~stored]
    rep.n_already_stored = int(stored.sum())
    if not cfg.retry_failed:
        failed = set(store.failures()["id"].astype(str))
        keep = ~todo["id"].astype(str).isin(failed)
        rep.n_skipped_failed = int((~keep).sum())
        todo = todo[keep]
    rep.n_requested = len(todo)
    return todo, replace, rep


def fetch_manifest(manifest: pd.DataFrame, store: CutoutStore, cfg: FetchConfig,
                   qa_cfg: QAConfig = QAConfig(), progress: bool = False,
                   transport: httpx.BaseTransport | None = None) -> FetchReport:
    """Fetch every manifest row not yet in ``store``; returns a :class:`FetchReport`."""
    t0 = time.monotonic()
    todo, replace, rep = plan_fetch(manifest, store, cfg)
    if todo.empty:
        rep.elapsed_s = time.monotonic() - t0
        return rep
    limiter = RateLimiter(cfg.rate_per_s)
    reasons: Counter[str] = Counter()
    headers = {"User-Agent": cfg.user_agent}
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    records = todo.to_dict("records")
    bar = _progress(progress, len(records))
    with sigterm_as_interrupt(), \
            httpx.Client(timeout=cfg.timeout_s, headers=headers, limits=limits, transport=transport) as client, \
            store.writer(commit_every=cfg.commit_every) as writer, \
            ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="cutout-fetch") as pool:
        pending: set[Future] = set()
        it = iter(records)
        window = cfg.concurrency * 4
        try:
            while True:
                while len(pending) < window:
                    row = next(it, None)
                    if row is None:
                        break
                    pending.add(pool.submit(fetch_one, client, cfg, str(row["id"]), float(row["ra"]),
                                            float(row["dec"]), limiter, qa_cfg, _extra_columns(row)))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    r: _Result = fut.result()
                    rep.n_retries += r.attempts - 1
                    prov = {"url": r.url, "layer": cfg.layer, "fetched_utc": r.fetched_utc,
                            "http_status": r.status if r.status is not None else -1, "attempts": r.attempts}
                    if r.cube is not None:
                        writer.add(r.cid, r.cube, r.ra, r.dec, replace=r.cid in replace, **r.qa, **prov,
                                   source="service", **r.extra)
                        rep.n_stored += 1
                        rep.n_replaced += r.cid in replace
                    else:
                        writer.add_failure(r.cid, r.ra, r.dec, r.reason, **prov)
                        rep.n_failed += 1
                        reasons[r.reason.split(":", 1)[0]] += 1
                    if bar is not None:
                        bar.update(1)
        except KeyboardInterrupt as exc:
            rep.interrupted = True
            for f in pending:
                f.cancel()
            log.warning("fetch %s: committing the %d cutouts stored so far", exc.__class__.__name__.lower()
                        .replace("keyboardinterrupt", "interrupted"), rep.n_stored)
            raise
        finally:
            if bar is not None:
                bar.close()
            rep.failure_reasons = dict(reasons)
            rep.elapsed_s = time.monotonic() - t0
    log.info("fetched %d cutouts (%d failed, %d already stored) in %.1f s",
             rep.n_stored, rep.n_failed, rep.n_already_stored, rep.elapsed_s)
    return rep


class _Bar:
    def __init__(self, total: int):
        from rich.progress import Progress

        self._p = Progress(transient=True)
        self._p.start()
        self._t = self._p.add_task("cutouts", total=total)

    def update(self, n: int) -> None:
        self._p.advance(self._t, n)

    def close(self) -> None:
        self._p.stop()


def _progress(enabled: bool, total: int) -> _Bar | None:
    return _Bar(total) if enabled else None
