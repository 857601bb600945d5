"""Benchmark: scoring raw cutouts through the three model routes of ``lensaudit.scoring``, as ratios.

One architecture (the demo's compact bottleneck ResNet at its 40-pixel crop, and torchvision's ResNet-18 at 101
pixels), untrained weights saved as a lensaudit checkpoint, exported by ``export_model`` to ONNX and TorchScript;
each route scores the same raw cutouts (N, 3, 101, 101) end to end (preprocessing included, features on, as a
selection run asks) with ``load_scorer``. Reports cutouts/s per route, the ratio to the checkpoint route in the
same run, and the largest probability difference to the checkpoint. CPU only here (onnxruntime's CUDA provider
and the torch routes on a GPU: ``benchmarks/gpu.sh``). Writes ``benchmarks/results/scoring_<device>.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lensaudit.data.preprocess import PreprocessConfig
from lensaudit.models import build_model
from lensaudit.scoring import load_scorer
from lensaudit.scoring.export import export_model
from lensaudit.train.checkpoint import save_checkpoint
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {"bottleneck_resnet_crop40": ("bottleneck_resnet", {}, {"crop": 40, "r_in_pix": 32.5, "r_out_pix": 45.0}),
         "resnet18_101": ("resnet18", {}, {"r_in_pix": 32.5, "r_out_pix": 45.0})}


def _rate(sc, x: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    lg, _ = sc.score(x[:64], features=True)                  # warm-up (allocator, graph optimisation)
    t0 = time.perf_counter()
    for _ in range(repeats):
        lg, _ = sc.score(x, features=True)
    return len(x) * repeats / (time.perf_counter() - t0), lg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512, help="cutouts per scoring call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (a.n, 3, 101, 101)).astype(np.float32)
    yy, xx = np.mgrid[0:101, 0:101]
    x += (0.3 * np.exp(-((xx - 50) ** 2 + (yy - 50) ** 2) / 32.0))[None, None].astype(np.float32)
    out = {"what": "raw cutouts scored end to end (preprocessing, features) per model route", "device": a.device,
           "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "n": a.n, "batch_size": a.batch_size,
           "cases": {}, "run_info": run_info({"n": a.n, "repeats": a.repeats, "batch_size": a.batch_size}, "", {"bench": 0})}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (arch, kw, pre) in CASES.items():
            torch.manual_seed(0)
            ck = Path(tmp) / f"{name}.pt"
            save_checkpoint(ck, arch=arch, model_kwargs=kw, preprocess=PreprocessConfig(**pre).model_dump(),
                            model=build_model(arch, **kw).state_dict())
            export_model(ck, Path(tmp) / name)
            rows, ref = {}, None
            for route, path in (("checkpoint", ck), ("onnx", Path(tmp) / name / "model.onnx"),
                                ("torchscript", Path(tmp) / name / "model.ts")):
                sc = load_scorer(path, a.device, a.batch_size)
                r, lg = _rate(sc, x, a.repeats)
                p = 1 / (1 + np.exp(-lg))
                ref = p if ref is None else ref
                rows[route] = {"cutouts_per_s": round(r, 1), "max_abs_probability_difference": float(np.abs(p - ref).max())}
            for route in rows:
                rows[route]["ratio_to_checkpoint"] = round(rows[route]["cutouts_per_s"] / rows["checkpoint"]["cutouts_per_s"], 3)
            out["cases"][name] = rows
            print(name, {k: (v["cutouts_per_s"], v["ratio_to_checkpoint"]) for k, v in rows.items()})
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / f"scoring_{a.device}.json", out)


if __name__ == "__main__":
    main()
