"""Benchmark: training and scoring samples/s per architecture, data loader on and off.

"Loader off": batches are preprocessed tensors already in memory (the model alone).
"Loader on": the real path, CutoutDataset over a cutout store (memory-mapped shards, per-sample
preprocessing, augmentation for training) through a DataLoader with ``--workers`` processes.
If the two rates are close, the loader is not the bottleneck. Runs on CUDA when available
(bf16 autocast, channels_last), else on CPU. Writes ``benchmarks/results/train_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hotpaths import python_profile, torch_profile
from lensaudit.data.dataset import CutoutDataset
from lensaudit.data.preprocess import PreprocessConfig
from lensaudit.data.synthetic import make_tiny_store
from lensaudit.models import build_model, count_parameters
from lensaudit.train.loop import weighted_bce
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

RESULTS = Path(__file__).resolve().parent / "results"


def _rate(fn, n_items: int, repeats: int) -> float:
    fn()  # warm-up (cuDNN autotune, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_items * repeats / (time.perf_counter() - t0)


def bench_arch(arch: str, store, manifest, dev: torch.device, batch: int, steps: int, workers: int) -> dict:
    model = build_model(arch).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    x = torch.randn(batch, 3, 101, 101, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, device=dev) < 0.5).float()
    w = torch.ones(batch, device=dev)

    def train_step(xb=x, yb=y, wb=w):
        with amp:
            loss = weighted_bce(model(xb).squeeze(1), yb, wb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def score_step(xb=x):
        with amp:
            model(xb)

    model.train()
    train_step()                                         # warm-up, then where a step's time goes
    profile = {"train_step": torch_profile(train_step), "score_step": torch_profile(score_step)}
    train_off = _rate(lambda: [train_step() for _ in range(steps)], batch * steps, 1)
    model.eval()
    score_off = _rate(lambda: [score_step() for _ in range(steps)], batch * steps, 1)
    bf16 = {}
    if dev.type == "cpu":       # the training config's amp: bf16 on the CPU (autocast), loader off
        amp = torch.autocast("cpu", dtype=torch.bfloat16)
        model.train()
        train_step()
        bf16 = {"train_samples_per_s_loader_off_bf16": round(_rate(lambda: [train_step() for _ in range(steps)],
                                                                   batch * steps, 1), 1)}
        model.eval()
        bf16["score_samples_per_s_loader_off_bf16"] = round(_rate(lambda: [score_step() for _ in range(steps)],
                                                                  batch * steps, 1), 1)
        amp = torch.autocast("cpu", enabled=False)
    if arch == "bottleneck_resnet":        # the demo's protocol crops to the central 40 x 40 pixels (configs/train)
        xc = x[..., 30:70, 30:70].contiguous(memory_format=torch.channels_last)
        model.train()
        bf16["train_samples_per_s_loader_off_crop40"] = round(
            _rate(lambda: [train_step(xc) for _ in range(steps)], batch * steps, 1), 1)
        model.eval()
        bf16["score_samples_per_s_loader_off_crop40"] = round(
            _rate(lambda: [score_step(xc) for _ in range(steps)], batch * steps, 1), 1)
    pre = PreprocessConfig()
    kw = {"num_workers": workers, "persistent_workers": True, "prefetch_factor": 4} if workers else {}
    ds_train = CutoutDataset(manifest, store, pre, augment_seed=1, cache=False)
    ds_score = CutoutDataset(manifest, store, pre, cache=False)
    lt = DataLoader(ds_train, batch_size=batch, shuffle=True, drop_last=True, pin_memory=dev.type == "cuda", **kw)
    ls = DataLoader(ds_score, batch_size=batch, shuffle=False, drop_last=True, pin_memory=dev.type == "cuda", **kw)

    def loop(loader, step, k):
        done = 0
        while done < k:
            for xb, yb, wb, _ in loader:
                xb = xb.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                if step is train_step:
                    step(xb, yb.to(dev).float(), wb.to(dev).float())
                else:
                    step(xb)
                done += 1
                if done >= k:
                    break

    model.train()
    train_on = _rate(lambda: loop(lt, train_step, steps), batch * steps, 1)
    model.eval()
    score_on = _rate(lambda: loop(ls, score_step, steps), batch * steps, 1)
    n_lo = max(steps, 40)  # the loader alone is cheap: time enough batches to see its steady rate
    loader_only = _rate(lambda: loop(ls, lambda xb: None, n_lo), batch * n_lo, 1)
    return {"params": count_parameters(model), "batch": batch, "steps": steps,
            "train_samples_per_s_loader_off": round(train_off, 1), "train_samples_per_s_loader_on": round(train_on, 1),
            "score_samples_per_s_loader_off": round(score_off, 1), "score_samples_per_s_loader_on": round(score_on, 1),
            "loader_only_samples_per_s": round(loader_only, 1), **bf16, "profile": profile,
            "profile_loader": python_profile(lambda: loop(ls, lambda xb: None, 10))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["bottleneck_resnet", "resnet18", "efficientnet_v2_s"])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = a.batch or (512 if dev.type == "cuda" else 32)
    steps = a.steps or (20 if dev.type == "cuda" else 3)
    torch.backends.cudnn.benchmark = True
    res = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
           "workers": a.workers, "targets_h100": {"efficientnet_v2_s_train_samples_per_s": 3000,
                                                   "resnet18_score_samples_per_s": 10000}, "archs": {}}
    with tempfile.TemporaryDirectory() as d:
        store, manifest = make_tiny_store(Path(d) / "store", n=max(batch * 8, 1024))
        for arch in a.archs:
            res["archs"][arch] = bench_arch(arch, store, manifest, dev, batch, steps, a.workers)
            print(arch, json.dumps(res["archs"][arch]), flush=True)
    res["run_info"] = run_info(seeds={})
    atomic_write_json(RESULTS / f"train_{dev.type}.json", res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
