"""The training loop: weighted BCE, AdamW, step/cosine schedules, gradient accumulation, mixed
precision and ``channels_last`` on CUDA, optional ``torch.compile``, validation AUC per epoch,
``best.pt``/``last.pt``/``epoch_NNNN.pt`` checkpoints, exact resume, metrics log, run record.

Determinism: the sample order of an epoch is a permutation drawn from (seed, epoch), the
augmentation of a sample from (seed, index, epoch), and the torch RNG state is saved in
``last.pt``; on CPU with deterministic algorithms, training 2 epochs equals training 1 and
resuming for 1, bit for bit.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from lensaudit.config import write_resolved
from lensaudit.cutouts import CutoutStore
from lensaudit.data.dataset import CutoutDataset, DataError, EpochSampler
from lensaudit.models import build_model, count_parameters
from lensaudit.train.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from lensaudit.train.config import TrainConfig
from lensaudit.utils.io import atomic_write_json, sha256_file
from lensaudit.utils.provenance import run_info

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message names the batch."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if cfg.amp == "fp16" else torch.bfloat16


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of weight x binary cross-entropy with logits."""
    return (F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none") * weights).mean()


def _loader(ds: CutoutDataset, cfg: TrainConfig, sampler, device: torch.device, batch_size: int) -> DataLoader:
    kw = {}
    if cfg.num_workers:
        kw = {"num_workers": cfg.num_workers, "persistent_workers": True, "prefetch_factor": 4}
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, pin_memory=device.type == "cuda", **kw)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None,
                   channels_last: bool) -> np.ndarray:
    model.eval()
    out = []
    ctx = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    for x, *_ in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx:
            out.append(model(x).float().squeeze(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def train(cfg: TrainConfig, resume: bool = False, config_path: str | None = None) -> dict:
    """Train per ``cfg`` into ``cfg.out``; with ``resume`` continue exactly from ``last.pt``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_sha = write_resolved(cfg, out / "config.resolved.yaml")
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(cfg.deterministic and device.type == "cpu")
    torch.manual_seed(cfg.seed)
    manifest = pd.read_parquet(cfg.manifest)
    for col in ("id", "label", "split"):
        if col not in manifest.columns:
            raise DataError(f"manifest {cfg.manifest}: no {col!r} column")
    store = CutoutStore(cfg.store)
    train_ds = CutoutDataset(manifest, store, cfg.preprocess, cfg.train_split, augment_seed=cfg.seed, cache=cfg.cache,
                             on_missing=cfg.on_missing, max_samples=cfg.max_train_samples)
    val_ds = CutoutDataset(manifest, store, cfg.preprocess, cfg.val_split, cache=cfg.cache, on_missing=cfg.on_missing,
                           max_samples=cfg.max_val_samples)
    model = build_model(cfg.arch, **cfg.model_kwargs)
    n_params = count_parameters(model)
    log.info("model %s: %s trainable parameters", cfg.arch, f"{n_params:,}")
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    start, best_auc, history = 0, -1.0, []
    if resume:
        ck = read_checkpoint(out / "last.pt")
        if ck["arch"] != cfg.arch:
            raise CheckpointError(f"{out / 'last.pt'}: holds a {ck['arch']!r} model, config says {cfg.arch!r}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["torch_rng"])
        start, best_auc, history = int(ck["epoch"]) + 1, float(ck["best_auc"]), list(ck["history"])
        log.info("resumed from %s at epoch %d", out / "last.pt", start)
    fwd = torch.compile(model) if cfg.compile else model
    sampler = EpochSampler(len(train_ds), cfg.seed)
    train_loader = _loader(train_ds, cfg, sampler, device, cfg.batch_size)
    val_loader = _loader(val_ds, cfg, None, device, cfg.batch_size)
    metrics_path = out / "metrics.jsonl"
    if not resume and metrics_path.exists():
        metrics_path.unlink()
    ctx = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    accum = cfg.accum_steps
    for epoch in range(start, cfg.epochs):
        lr = cfg.lr_at(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum, k = time.perf_counter(), 0, 0.0, 0
        opt.zero_grad(set_to_none=True)
        for k, (x, y, w, idx) in enumerate(train_loader, start=1):
            if not torch.isfinite(x).all():
                bad = train_ds.frame["id"].to_numpy()[idx.numpy()[~torch.isfinite(x).flatten(1).all(1).numpy()]]
                raise TrainingError(f"epoch {epoch} batch {k}: non-finite input pixels in cutout(s) {bad[:8].tolist()}")
            x, y, w = x.to(device, non_blocking=True), y.to(device), w.to(device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with ctx():
                logits = fwd(x).squeeze(1)
            loss = weighted_bce(logits, y, w)
            if not torch.isfinite(loss):
                bad = train_ds.frame["id"].to_numpy()[idx.numpy()]
                raise TrainingError(f"epoch {epoch} batch {k}: non-finite loss; batch ids {bad[:8].tolist()}"
                                    f"{' ...' if len(bad) > 8 else ''} (inputs finite: {bool(torch.isfinite(x).all())})")
            scaler.scale(loss / accum).backward()
            if k % accum == 0:
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            seen += len(y)
            loss_sum += loss.item() * len(y)
        if k % accum:
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        t_train = time.perf_counter() - t0
        vl = predict_logits(fwd, val_loader, device, dtype, cfg.channels_last)
        v_loss = float(weighted_bce(torch.from_numpy(vl), torch.from_numpy(val_ds.labels),
                                    torch.from_numpy(val_ds.weights)))
        auc = safe_auc(val_ds.labels, vl)
        rec = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / max(seen, 1), "val_loss": v_loss, "val_auc": auc,
               "train_samples_per_s": seen / t_train, "epoch_s": time.perf_counter() - t0}
        history.append(rec)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log.info("epoch %d/%d  loss %.4f  val_loss %.4f  val_auc %.4f  %.0f samples/s", epoch + 1, cfg.epochs,
                 rec["train_loss"], v_loss, auc, rec["train_samples_per_s"])
        improved = np.isfinite(auc) and auc > best_auc
        if improved:
            best_auc = auc
        payload = {"arch": cfg.arch, "model_kwargs": cfg.model_kwargs, "preprocess": cfg.preprocess.model_dump(),
                   "model": model.state_dict(), "epoch": epoch, "val_auc": auc, "best_auc": best_auc,
                   "config_sha256": cfg_sha}
        if improved:
            save_checkpoint(out / "best.pt", **payload)
        if (epoch + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(out / f"epoch_{epoch + 1:04d}.pt", **payload)
        save_checkpoint(out / "last.pt", **payload, optimizer=opt.state_dict(), torch_rng=torch.get_rng_state(),
                        scaler=scaler.state_dict() if scaler.is_enabled() else {}, history=history)
    last = history[-1] if history else {}
    summary = {"arch": cfg.arch, "n_params": n_params, "epochs": cfg.epochs, "best_val_auc": best_auc,
               "final_val_auc": last.get("val_auc"), "n_train": len(train_ds), "n_val": len(val_ds),
               "n_missing_skipped": len(train_ds.missing) + len(val_ds.missing), "device": str(device),
               "amp": str(dtype) if dtype else "off", "history": history}
    atomic_write_json(out / "run_info.json", run_info(
        config=cfg.model_dump(mode="json"), config_sha256=cfg_sha, seeds={"train": cfg.seed},
        extra={"config_file": config_path,
               "config_file_sha256": sha256_file(config_path) if config_path else None, "device": str(device),
               "cuda_device": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
               "summary": summary}))
    return summary

