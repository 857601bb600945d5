"""Cutout client against the loopback service, with injected faults, and resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs

import httpx
import numpy as np
import pandas as pd
import pytest

from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest
from lensaudit.cutouts.client import RateLimiter
from lensaudit.mock.server import Fault, serve_in_thread
from lensaudit.survey.cutout_fits import cutout_fits_bytes

FAST = dict(rate_per_s=1000.0, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=2.0, concurrency=4)


def _manifest(n, ra0=150.0):
    return pd.DataFrame({"id": [f"obj{i:04d}" for i in range(n)], "ra": ra0 + np.arange(n) * 0.01,
                         "dec": np.full(n, 1.5), "tier": ["A"] * n, "label": np.ones(n, int)})


def test_fetch_stores_valid_cutouts_with_provenance(tmp_path, render):
    m = _manifest(12)
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render) as srv:
        rep = fetch_manifest(m, store, FetchConfig(service_url=srv.url, **FAST))
    assert rep.n_stored == 12 and rep.n_failed == 0
    idx = store.index.set_index("id")
    row = idx.loc["obj0003"]
    q = parse_qs(row["url"].split("?", 1)[1])
    assert q["size"] == ["101"] and q["layer"] == ["ls-dr10"] and q["bands"] == ["grz"]
    assert q["pixscale"] == ["0.262"] and float(q["ra"][0]) == pytest.approx(150.03)
    assert row["http_status"] == 200 and row["tier"] == "A" and row["label"] == 1
    # pixels identical to what the service rendered
    from lensaudit.mock.server import CutoutRequest

    want, _ = render(CutoutRequest(150.03, 1.5, 101, 101, 0.262, "grz", "ls-dr10", False))
    np.testing.assert_array_equal(store.get(["obj0003"])[0], want)


def test_transient_faults_are_retried(tmp_path, render):
    calls: dict[str, int] = {}

    def fault(n, query):
        ra = parse_qs(query)["ra"][0]
        k = calls[ra] = calls.get(ra, 0) + 1
        i = int(round((float(ra) - 150.0) / 0.01))
        if k == 1 and i % 4 == 0:
            return Fault(status=500)
        if k == 1 and i % 4 == 1:
            return Fault(status=429, headers={"Retry-After": "0"})
        if k == 1 and i % 4 == 2:
            return Fault(truncate_to=5000)  # truncated FITS body
        if k == 1 and i % 4 == 3:
            return Fault(delay_s=0.6)  # longer than the client timeout below
        return None

    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render, fault=fault) as srv:
        rep = fetch_manifest(_manifest(8), store, FetchConfig(service_url=srv.url, **{**FAST, "timeout_s": 0.3}))
    assert rep.n_stored == 8 and rep.n_failed == 0
    assert rep.n_retries == 8
    assert sorted(store.index["attempts"]) == [2] * 8


def test_permanent_faults_are_recorded_not_stored(tmp_path, render):
    def bad_render(req):
        i = int(round((req.ra - 150.0) / 0.01))
        cube, _ = render(req)
        if i == 0:
            return None  # no overlap -> HTTP 500 from the service, retried then failed
        if i == 1:
            cube[2] = 0.0  # z band outside the footprint -> all zero
        if i == 2:
            cube[0, 50, 50] = np.nan
        return cube, None

    def fault(n, query):
        i = int(round((float(parse_qs(query)["ra"][0]) - 150.0) / 0.01))
        if i == 3:
            return Fault(body=cutout_fits_bytes(np.zeros((3, 64, 64), np.float32) + 1, 150.03, 1.5))
        if i == 4:
            return Fault(status=404)
        return None

    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(bad_render, fault=fault) as srv:
        rep = fetch_manifest(_manifest(6), store, FetchConfig(service_url=srv.url, **{**FAST, "max_retries": 2}))
    assert rep.n_stored == 1 and rep.n_failed == 5
    fails = store.failures().set_index("id")["reason"]
    assert fails["obj0000"].startswith("http_500")
    assert fails["obj0001"].startswith("missing_band: z")
    assert fails["obj0002"].startswith("core_nan")
    assert fails["obj0003"].startswith("wrong_shape")
    assert fails["obj0004"].startswith("http_404")
    assert list(store.index["id"]) == ["obj0005"]
    assert store.failures().set_index("id")["attempts"]["obj0000"] == 3
    # a re-run retries the failures by default, and skips them on request
    with serve_in_thread(bad_render, fault=fault) as srv:
        rep2 = fetch_manifest(_manifest(6), store, FetchConfig(service_url=srv.url, retry_failed=False, **FAST))
    assert rep2.n_already_stored == 1 and rep2.n_skipped_failed == 5 and rep2.n_requested == 0


def test_unknown_layer_text_answer_is_a_failure(tmp_path, render):
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render) as srv:
        rep = fetch_manifest(_manifest(1), store, FetchConfig(service_url=srv.url, layer="ls-dr99", **FAST))
    assert rep.n_failed == 1 and store.failures()["reason"][0].startswith("not_fits")


def test_rate_limiter_spaces_requests():
    t = [0.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        t[0] += dt

    lim = RateLimiter(4.0, clock=lambda: t[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert t[0] == pytest.approx(1.0)  # 5 starts at 0, .25, .5, .75, 1.0
    assert slept == pytest.approx([0.25] * 4)


def test_real_rate_is_bounded(tmp_path, render):
    store = CutoutStore(tmp_path / "s", create=True)
    with serve_in_thread(render) as srv:
        t0 = time.monotonic()
        fetch_manifest(_manifest(10), store, FetchConfig(service_url=srv.url, **{**FAST, "rate_per_s": 20.0}))
        assert time.monotonic() - t0 >= 9 / 20.0


def test_resume_after_killed_fetch_fetches_only_missing(tmp_path, render):
    n = 60
    manifest = tmp_path / "m.csv"
    _manifest(n).to_csv(manifest, index=False)
    root = tmp_path / "s"
    with serve_in_thread(render) as srv:
        cmd = [sys.executable, "-m", "lensaudit.cli", "-q", "cutouts", "fetch", "--manifest", str(manifest),
               "--service", srv.url, "--store", str(root), "--rate", "40", "--concurrency", "2",
               "--commit-every", "5"]
        proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            idx = root / "index"
            if idx.exists() and len(list(idx.glob("*.parquet"))) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = CutoutStore(root)
        store.repair()
        n_first = len(store)
        assert 15 <= n_first < n
        before = srv.n_requests
        rep = fetch_manifest(pd.read_csv(manifest), CutoutStore(root), FetchConfig(service_url=srv.url, **FAST))
        assert rep.n_already_stored == n_first and rep.n_requested == n - n_first
        assert srv.n_requests - before == n - n_first
    final = CutoutStore(root)
    assert len(final) == n and final.verify()["ok"]
    assert sorted(final.index["id"]) == [f"obj{i:04d}" for i in range(n)]


def test_loopback_service_semantics(render):
    with serve_in_thread(render) as srv:
        base = srv.url
        r = httpx.get(base, params={"dec": 1})
        assert r.status_code == 400 and r.text == "Need ra,dec keywords"
        r = httpx.get(base, params={"ra": 1, "dec": 1, "size": 20, "layer": "ls-dr10", "bands": "grx"})
        from lensaudit.survey.cutout_fits import read_cutout_fits

        cube, hdr = read_cutout_fits(r.content, 20, "griz")  # invalid bands -> layer default griz
        assert hdr["BANDS"] == "griz"
        r = httpx.get(base.replace("fits-cutout", "cutout.fits"), params={"ra": 1, "dec": 1, "size": 9,
                                                                          "layer": "ls-dr10", "bands": "r"})
        assert read_cutout_fits(r.content, 9, "r")[0].shape == (1, 9, 9)


def test_client_hanging_up_early_is_one_log_line_not_a_traceback(render, capfd, caplog):
    import logging
    import socket
    import struct

    with caplog.at_level(logging.INFO, logger="lensaudit.mock.server"), serve_in_thread(render) as srv:
        host, port = srv.server_address[:2]
        for _ in range(3):
            s = socket.create_connection((host, port))
            s.sendall("GET /viewer/fits-cutout?ra=20&dec=1&size=1500&layer=ls-dr10 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            s.close()
        # the server keeps answering after the hang-ups
        assert httpx.get(srv.url, params={"ra": 20, "dec": 1, "size": 11, "layer": "ls-dr10"}).status_code == 200
        deadline = time.monotonic() + 20  # the handler threads notice the reset when they write
        while not any("hung up" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    err = capfd.readouterr().err
    assert "Traceback" not in err and 'File "' not in err
    assert any("hung up" in r.getMessage() for r in caplog.records)
