"""The README's performance table, read from ``benchmarks/results/*.json``: every throughput figure of issue 29 with
its reference in the same run, the ratio, the target, and the commit and machine each file was measured on.

    python benchmarks/perf_table.py        # prints Markdown; paste it over the README's table
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

RES = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    p = RES / name
    return json.loads(p.read_text()) if p.is_file() else None


def _committed(name: str) -> str:
    """The commit and date that last wrote a results file (for a file without its own run_info)."""
    out = subprocess.run(["git", "log", "-1", "--format=%h, %ad", "--date=short", "--", str(RES / name)],
                         capture_output=True, text=True, cwd=RES).stdout.strip()
    return f"written at {out}" if out else "?"


def _where(d: dict | None) -> str:
    if not d:
        return "not measured"
    ri = d.get("run_info", {})
    dev = d.get("device") or d.get("gpu") or (f"{ri.get('cpu') or 'CPU model not recorded'}, "
                                               f"{d.get('workers') or d.get('cores') or d.get('threads') or '?'} cores")
    return f"`{(ri.get('git_commit') or '?')[:7]}`, {ri.get('utc_time', '?')[:10]}, {dev}"


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "not measured"
    return f"{v:,.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"


#: The rich mock's pool rates recorded by bench_mock.py at commit 68e62d4 (2026-12-02, this machine type), before the
#: compiled kernels: the reference the rendering rows are compared with (the same images, tested).
BEFORE_29 = {"galaxy_centred": 73.0, "lens_centred": 38.0}
#: The demo's stages in pipeline order.
DEMO_ORDER = ("samples", "sources", "mock", "catalog", "fetch", "train", "score", "evaluate", "shortcuts", "selection",
              "check", "report")


def rows() -> list[tuple[str, str, str, str, str, str]]:
    out = []
    m = _load("mock_render.json")
    if m:
        rich = m.get("rich", {})
        v1 = m.get("before_v1", {})
        for kind, target in (("galaxy_centred", 300), ("lens_centred", 150)):
            r = rich.get(kind, {})
            v, before = r.get("cutouts_per_s_pool"), BEFORE_29[kind]
            same = m.get("before_same_machine", {})
            if same.get(kind):       # the same machine's earlier rate: the ratio that measures the change
                b = same[kind]["cutouts_per_s_pool"]
                ref = (f"{b}/s at `{same['commit']}` on the same {same['cpu']} (recorded); {before}/s before issue "
                       f"29's kernels (`68e62d4`, AMD EPYC)")
            else:
                b, ref = before, (f"{before}/s before issue 29's kernels (`68e62d4`, recorded); v1 mock "
                                  f"{v1.get('cutouts_per_s_pool')}/s")
            out.append((f"mock rendering, {kind.replace('_', '-')} 101 x 101 g,r,z cutouts/s (pool)", _fmt(v), ref,
                        f"{v / b:.1f}x" if v else "", f">= {target}", _where(m)))
    i = _load("inject.json")
    if i:
        lt = i.get("lenstronomy_cpu", {}).get("injections_per_s")
        eng = i.get("engine_cpu", [])
        best: dict = {}
        for r in eng:                           # the best chunk of each setting
            key = (r.get("compiled", False), r["host_stats_precomputed"])
            best[key] = max(best.get(key, 0.0), r["injections_per_s"])
        for (comp, known), label in (((False, False), "eager"), ((True, False), "compiled"),
                                     ((True, True), "compiled, host statistics known")):
            v = best.get((comp, known))
            out.append((f"injection engine ({label}), injections/s", _fmt(v), f"lenstronomy {lt}/s, same run",
                        f"{v / lt:.1f}x" if v and lt else "", ">= 8x", _where(i)))
        pr = i.get("paired_compiled_known_host_stats_vs_lenstronomy_cpu")
        if pr:
            med = lambda v: float(np.median(v))    # noqa: E731
            out.append(("injection engine (compiled, host statistics known), paired rounds with lenstronomy "
                        "(the target's figure), injections/s", _fmt(round(med(pr["engine_injections_per_s"]), 1)),
                        f"lenstronomy {med(pr['lenstronomy_injections_per_s']):.1f}/s, {pr['rounds']} alternating "
                        f"rounds (median ratio of rounds; range {pr['ratio_min']}-{pr['ratio_max']}x)",
                        f"{pr['ratio_median']:.1f}x", ">= 8x", _where(i)))
    ic = _load("inject_cuda.json")
    cuda = (ic or {}).get("engine_cuda")
    out.append(("injection engine on a GPU, injections/s",
                _fmt(max(r["injections_per_s"] for r in cuda)) if isinstance(cuda, list) else "not measured",
                "", "", ">= 20,000", f"{_where(ic)}, {ic.get('gpu')}" if isinstance(cuda, list) else "no GPU lent"))
    t = _load("train_cpu.json")
    if t:
        b = t.get("archs", {}).get("bottleneck_resnet", {})
        base = b.get("train_samples_per_s_loader_off")
        for key, label in (("train_samples_per_s_loader_off", "fp32, 101 px"),
                           ("train_samples_per_s_loader_off_bf16", "bf16 autocast, 101 px"),
                           ("train_samples_per_s_loader_off_crop40", "fp32, demo crop 40 px")):
            v = b.get(key)
            out.append((f"compact ResNet training ({label}), samples/s", _fmt(v), f"fp32 101 px {base}/s, same run",
                        f"{v / base:.1f}x" if v and base else "", ">= 2x", _where(t)))
        sb = b.get("score_samples_per_s_loader_off")
        v = b.get("score_samples_per_s_loader_off_crop40")
        out.append(("compact ResNet scoring (fp32, demo crop 40 px), samples/s", _fmt(v),
                    f"fp32 101 px {sb}/s, same run", f"{v / sb:.1f}x" if v and sb else "", ">= 2x", _where(t)))
    g = _load("train_cuda.json")
    for key, label, target in (("efficientnet_v2_s", "EfficientNetV2-S training", "3,000"),
                               ("resnet18", "ResNet-18 scoring", "10,000")):
        v = None
        if g:
            a = g.get("archs", {}).get(key, {})
            v = a.get("train_samples_per_s_loader_on" if "training" in label else "score_samples_per_s_loader_on")
        out.append((f"{label} on a GPU, samples/s", _fmt(v), "", "", f">= {target}", _where(g) if g else "no GPU lent"))
    d = _load("demo.json")
    out.append(("`lensaudit demo`, whole run (s)", _fmt(d.get("total_s")) if d else "not measured",
                ", ".join(f"{k} {(d or {})['stages_s'][k]:.0f}" for k in DEMO_ORDER
                          if k in (d or {}).get("stages_s", {})), "", "< 300",
                _where(d)))
    vm = _load("validation_matrix.json")
    rt = ((vm or {}).get("summary") or {}).get("runtime_s")
    total = rt.get("total") if isinstance(rt, dict) else rt
    out.append(("validation matrix (`configs/validation.yaml`), whole run (s)", _fmt(total),
                "3 universes x (mock, fetch, train, 3 seeds' selection runs)", "", "recorded",
                _where({**vm, "cores": vm["run_info"].get("cores")}) if vm and "run_info" in vm
                else _committed("validation_matrix.json") + ", cpu, 2 cores"))
    return out


def main() -> None:
    print("| figure | value | reference | ratio | target | commit, date, machine |")
    print("|---|---|---|---|---|---|")
    for r in rows():
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
