"""The training loop: weighted BCE, AdamW, step/cosine schedules, gradient accumulation, mixed
precision and ``channels_last`` on CUDA, optional ``torch.compile``, validation AUC per epoch,
``best.pt``/``last.pt``/``epoch_NNNN.pt`` checkpoints, exact resume, metrics log, run record.

The loop is split into steps that can be read (and tested) alone: :func:`setup` builds the
datasets, model and optimiser; :func:`restore` loads ``last.pt``; :func:`train_epoch` runs one
epoch; :func:`validate` scores the validation split; :func:`save_epoch` writes the
checkpoints and the metrics line; :func:`train` strings them together.

Determinism: the sample order of an epoch is a permutation drawn from (seed, epoch), the
augmentation of a sample from (seed, index, epoch), and the torch RNG state is saved in
``last.pt``; on CPU with deterministic algorithms, training 2 epochs equals training 1 and
resuming for 1, bit for bit.

Several processes (``torchrun --nproc_per_node N lensaudit train --config ...``; PyTorch
DistributedDataParallel, NCCL on GPUs, gloo on CPUs): every optimiser step's micro-batches are those
of one process, dealt round-robin to the ranks (:func:`lensaudit.data.dataset.step_plan`), and each
rank's loss is scaled so that the all-reduced gradient is the single process's; so N processes give
the weights one process gives with the same ``batch_size`` and ``effective_batch`` (to float
round-off; tested with two gloo processes). Rank 0 alone validates, writes checkpoints and records;
batch-norm running statistics are rank 0's, copied to the others after each epoch (as DDP does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lensaudit.artifacts import TrainDir, read_manifest
from lensaudit.config import write_resolved
from lensaudit.cutouts import CutoutStore
from lensaudit.data.dataset import CutoutDataset, StepBatchSampler
from lensaudit.errors import LensauditError, RunExistsError
from lensaudit.models import build_model, count_parameters
from lensaudit.train.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from lensaudit.train.config import TrainConfig
from lensaudit.utils.io import atomic_write_json, atomic_write_text, exclusive_lock, sha256_file
from lensaudit.utils.progress import progress
from lensaudit.utils.provenance import run_info
from lensaudit.utils.stats import roc_auc_or_nan

log = logging.getLogger(__name__)


class TrainingError(LensauditError, RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message names the batch."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a ``torchrun`` job (a single process: world 1, rank 0)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """The job's WORLD_SIZE, RANK and LOCAL_RANK as ``torchrun`` sets them (unset: one process)."""
    try:
        env = DistEnv(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise TrainingError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers ({exc})") from exc
    if env.world < 1 or not 0 <= env.rank < env.world:
        raise TrainingError(f"RANK {env.rank} is outside WORLD_SIZE {env.world}")
    return env


def _barrier(env: DistEnv) -> None:
    if env.active:
        torch.distributed.barrier()


@contextlib.contextmanager
def _process_group(env: DistEnv, device_name: str):
    """Join the ``torchrun`` job's process group for the run (nothing for one process)."""
    import torch.distributed as dist

    if not env.active or dist.is_initialized():
        yield
        return
    cuda = device_name != "cpu" and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but no CUDA device is available")
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


@dataclass
class TrainRun:
    """Everything one training run holds between its steps."""

    cfg: TrainConfig
    out: Path
    cfg_sha: str
    device: torch.device
    dtype: torch.dtype | None
    train_ds: CutoutDataset
    val_ds: CutoutDataset
    model: torch.nn.Module
    fwd: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: StepBatchSampler
    train_loader: DataLoader
    val_loader: DataLoader
    n_params: int
    env: DistEnv = DistEnv()
    train_fwd: torch.nn.Module | None = None  # the module training calls (DDP-wrapped in a torchrun job)
    inputs: dict = field(default_factory=dict)   # train_inputs(cfg): what reuse and resume are keyed on
    start: int = 0
    best_auc: float = -1.0
    history: list[dict] = field(default_factory=list)

    @property
    def autocast(self):
        return (lambda: torch.autocast(self.device.type, dtype=self.dtype)) if self.dtype else nullcontext


def setup(cfg: TrainConfig, out: Path, cfg_sha: str, env: DistEnv = DistEnv()) -> TrainRun:
    """Device, determinism, datasets (from the manifest and store), model, optimiser, loaders."""
    device = pick_device(cfg.device)
    if env.active and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(cfg.deterministic and device.type == "cpu")
    torch.manual_seed(cfg.seed)
    manifest = read_manifest(cfg.manifest, require=("id", "label", "split"))
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
    fwd = torch.compile(model) if cfg.compile else model
    train_fwd = fwd
    if env.active:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.accum_steps % env.world:
            log.warning("effective batch %d = %d micro-batches of %d: not a multiple of the %d processes, so some "
                        "ranks idle in every step (same weights, wasted devices)", cfg.batch_size * cfg.accum_steps,
                        cfg.accum_steps, cfg.batch_size, env.world)
        # buffers (batch-norm statistics) are not broadcast at every forward: ranks may run different numbers
        # of micro-batches in a step; they are copied from rank 0 after each epoch instead
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
        train_fwd = torch.compile(ddp) if cfg.compile else ddp
    sampler = StepBatchSampler(len(train_ds), cfg.seed, cfg.batch_size, cfg.accum_steps, env.world, env.rank)
    kw = {"num_workers": cfg.num_workers, "persistent_workers": True, "prefetch_factor": 4} if cfg.num_workers else {}
    train_loader = DataLoader(train_ds, batch_sampler=sampler, pin_memory=device.type == "cuda", **kw)
    return TrainRun(cfg, out, cfg_sha, device, dtype, train_ds, val_ds, model, fwd, opt, scaler, sampler,
                    train_loader, _loader(val_ds, cfg, None, device, cfg.batch_size), n_params, env, train_fwd,
                    inputs=train_inputs(cfg))


#: Config fields a resumed run may change (they do not change what is being trained).
RESUME_MAY_CHANGE = frozenset({"epochs", "out", "num_workers", "threads", "checkpoint_every", "compile", "device"})


def resume_identity(cfg: TrainConfig) -> dict:
    """The part of a config that must match for ``--resume`` (everything but :data:`RESUME_MAY_CHANGE`)."""
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RESUME_MAY_CHANGE}


def train_inputs(cfg: TrainConfig) -> dict[str, str]:
    """The contents a training run reads, fingerprinted: its manifest's SHA-256 and its store's
    (:meth:`~lensaudit.cutouts.CutoutStore.fingerprint`). Reuse and resume are keyed on them, not on paths."""
    from lensaudit.cutouts import CutoutStore

    return {"manifest_sha256": sha256_file(cfg.manifest), "store_fingerprint": CutoutStore(cfg.store).fingerprint()}


def check_resumable(cfg: TrainConfig, ck: dict, path: Path, inputs: dict | None = None) -> None:
    """CheckpointError naming every config key that differs from the checkpoint's (bar the allowed ones), and every
    input whose contents changed since the checkpoint (``inputs``: :func:`train_inputs` now)."""
    then_in = ck.get("inputs")
    if inputs is not None and then_in is not None:
        changed = sorted(k for k in inputs if then_in.get(k) != inputs[k])
        if changed:
            raise CheckpointError(f"{path}: the contents of {', '.join(changed)} changed since this run started "
                                  f"({', '.join(f'{k} {str(then_in.get(k))[:12]} -> {inputs[k][:12]}' for k in changed)}); "
                                  "start a new run or replace it with --force")
    if ck["arch"] != cfg.arch:
        raise CheckpointError(f"{path}: holds a {ck['arch']!r} model, config says {cfg.arch!r}")
    stored = ck.get("config")
    if stored is None:  # checkpoints written before configs were stored in them: arch only
        log.warning("%s: no stored config (older checkpoint); only the architecture was compared", path)
        return
    now = resume_identity(cfg)
    then = {k: v for k, v in stored.items() if k not in RESUME_MAY_CHANGE}
    diff = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if diff:
        ex = "; ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in diff[:6])
        raise CheckpointError(f"{path}: config differs from the run being resumed ({ex}); only "
                              f"{sorted(RESUME_MAY_CHANGE)} may change on --resume (start a new run, or --force)")


def restore(run: TrainRun) -> None:
    """Continue exactly from ``last.pt``: weights, optimiser, scaler, torch RNG, epoch, best AUC, history;
    ``metrics.jsonl`` is rewritten from the checkpoint's history, so the log and the checkpoint agree."""
    path = TrainDir(run.out).last
    ck = read_checkpoint(path)
    check_resumable(run.cfg, ck, path)
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    if ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    torch.set_rng_state(ck["torch_rng"])
    run.start, run.best_auc, run.history = int(ck["epoch"]) + 1, float(ck["best_auc"]), list(ck["history"])
    if run.env.main:
        atomic_write_text(TrainDir(run.out).metrics_log, "".join(json.dumps(r) + "\n" for r in run.history))
    log.info("resumed from %s at epoch %d", path, run.start)


def train_epoch(run: TrainRun, epoch: int) -> dict:
    """One pass over the training split (gradient accumulation, AMP, the ranks of a torchrun job);
    returns loss, samples and seconds (summed over the ranks)."""
    cfg, opt, scaler, env = run.cfg, run.opt, run.scaler, run.env
    lr = cfg.lr_at(epoch)
    for g in opt.param_groups:
        g["lr"] = lr
    run.sampler.set_epoch(epoch)
    run.train_ds.set_epoch(epoch)
    run.model.train()
    fwd = run.train_fwd or run.fwd
    t0, seen, loss_sum, k = time.perf_counter(), 0, 0.0, 0
    accum, world = cfg.accum_steps, env.world
    batches = iter(run.train_loader)
    for step in run.sampler.plan():
        opt.zero_grad(set_to_none=True)
        if not step:      # a short last step left this rank no micro-batch: join the all-reduce with zeros
            _zero_gradient_step(run, fwd)
        for j in range(len(step)):
            x, y, w, idx = next(batches)
            k += 1
            if not torch.isfinite(x).all():
                bad = run.train_ds.frame["id"].to_numpy()[idx.numpy()[~torch.isfinite(x).flatten(1).all(1).numpy()]]
                raise TrainingError(f"epoch {epoch} batch {k}: non-finite input pixels in cutout(s) {bad[:8].tolist()}")
            x, y, w = x.to(run.device, non_blocking=True), y.to(run.device), w.to(run.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # gradients are all-reduced once per step, at this rank's last micro-batch
            sync = fwd.no_sync() if env.active and j < len(step) - 1 else nullcontext()
            with sync:
                with run.autocast():
                    logits = fwd(x).squeeze(1)
                loss = weighted_bce(logits, y, w)
                if not torch.isfinite(loss):
                    bad = run.train_ds.frame["id"].to_numpy()[idx.numpy()]
                    raise TrainingError(f"epoch {epoch} batch {k}: non-finite loss; batch ids {bad[:8].tolist()}"
                                        f"{' ...' if len(bad) > 8 else ''} (inputs finite: {bool(torch.isfinite(x).all())})")
                # x world: the all-reduce averages the ranks, so the step's gradient is the mean over its
                # micro-batches of their mean loss / accum, as in one process
                scaler.scale(loss * world / accum).backward()
            seen += len(y)
            loss_sum += loss.item() * len(y)
        scaler.step(opt)
        scaler.update()
    opt.zero_grad(set_to_none=True)
    if env.active:
        tot = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=run.device)
        torch.distributed.all_reduce(tot)
        loss_sum, seen = float(tot[0]), int(tot[1])
    return {"lr": lr, "train_loss": loss_sum / max(seen, 1), "seen": seen, "seconds": time.perf_counter() - t0}


def _zero_gradient_step(run: TrainRun, fwd: torch.nn.Module) -> None:
    """A rank with no sample in a step still takes part in its gradient all-reduce: a forward in eval mode
    (batch-norm statistics untouched) on one blank cutout and a backward of zero."""
    x = torch.zeros((1, *run.train_ds[0][0].shape), device=run.device)
    if run.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    run.model.eval()
    (fwd(x).float().sum() * 0.0).backward()
    run.model.train()


def _sync_buffers(run: TrainRun) -> None:
    """Batch-norm running statistics from rank 0 to every rank (DDP's convention), once per epoch."""
    if run.env.active:
        for b in run.model.buffers():
            torch.distributed.broadcast(b, 0)


def validate(run: TrainRun) -> tuple[float, float]:
    """(weighted validation loss, validation ROC AUC; NaN with a single class)."""
    vl = predict_logits(run.fwd, run.val_loader, run.device, run.dtype, run.cfg.channels_last)
    v_loss = float(weighted_bce(torch.from_numpy(vl), torch.from_numpy(run.val_ds.labels),
                                torch.from_numpy(run.val_ds.weights)))
    return v_loss, roc_auc_or_nan(run.val_ds.labels, vl)


def save_epoch(run: TrainRun, epoch: int, rec: dict) -> None:
    """``best.pt`` when the validation AUC improved, ``epoch_NNNN.pt`` every ``checkpoint_every``,
    then ``last.pt`` (with optimiser, RNG and history), then the epoch's line in ``metrics.jsonl``."""
    cfg, auc = run.cfg, rec["val_auc"]
    improved = np.isfinite(auc) and auc > run.best_auc
    if improved:
        run.best_auc = auc
    run.history.append(rec)
    payload = {"arch": cfg.arch, "model_kwargs": cfg.model_kwargs, "preprocess": cfg.preprocess.model_dump(),
               "inputs": run.inputs,
               "model": run.model.state_dict(), "epoch": epoch, "val_auc": auc, "best_auc": run.best_auc,
               "config_sha256": run.cfg_sha, "config": cfg.model_dump(mode="json")}
    td = TrainDir(run.out)
    if improved:
        save_checkpoint(td.best, **payload)
    if (epoch + 1) % cfg.checkpoint_every == 0:
        save_checkpoint(td.epoch(epoch + 1), **payload)
    save_checkpoint(td.last, **payload, optimizer=run.opt.state_dict(), torch_rng=torch.get_rng_state(),
                    scaler=run.scaler.state_dict() if run.scaler.is_enabled() else {}, history=run.history)
    with open(td.metrics_log, "a") as f:
        f.write(json.dumps(rec) + "\n")


#: Files of a training run; ``--force`` removes them before a new run starts in the same folder.
def run_files(out: Path) -> list[Path]:
    """The files of a training run in ``out`` that exist."""
    td = TrainDir(out)
    return [p for p in (td.last, td.best, td.metrics_log, td.run_info, td.resolved_config, *td.epochs()) if p.exists()]


def run_lock(out: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The run folder's lock: one training process per folder (BusyError for a second)."""
    return exclusive_lock(Path(out) / ".lock", f"training run {out}: another process is training into it")


def _prepare_folder(out: Path, resume: bool, force: bool) -> None:
    existing = [p.name for p in run_files(out)]
    if resume or not existing:
        return
    if not force:
        raise RunExistsError(f"{out} already holds a training run ({', '.join(sorted(existing)[:4])}); continue it "
                             f"with --resume, train into another folder, or replace it with --force")
    log.warning("--force: removing the previous run in %s", out)
    for name in existing:
        (out / name).unlink(missing_ok=True)


def train(cfg: TrainConfig, resume: bool = False, config_path: str | None = None, force: bool = False) -> dict:
    """Train per ``cfg`` into ``cfg.out``; with ``resume`` continue exactly from ``last.pt``.

    The run folder is locked for the duration; a folder that already holds a run is refused unless
    ``resume`` (continue it; the config must match bar :data:`RESUME_MAY_CHANGE`) or ``force``
    (replace it). Under ``torchrun`` every rank calls this; rank 0 prepares the folder and writes."""
    env = dist_env()
    out = Path(cfg.out)
    if not env.main:
        logging.getLogger("lensaudit").setLevel(logging.WARNING)
    with _process_group(env, cfg.device):
        if env.main:
            out.mkdir(parents=True, exist_ok=True)
        with run_lock(out) if env.main else nullcontext():
            last = TrainDir(out).last
            cfg_sha = ""
            if env.main:
                _prepare_folder(out, resume, force)
                if resume:  # checked before anything in the folder changes
                    if not last.exists():
                        raise CheckpointError(f"{last}: no last.pt to resume from (train without --resume first)")
                    check_resumable(cfg, read_checkpoint(last), last, train_inputs(cfg))
                cfg_sha = write_resolved(cfg, TrainDir(out).resolved_config)
            _barrier(env)
            run = setup(cfg, out, cfg_sha, env)
            if resume:
                restore(run)
            with progress(cfg.epochs - run.start if env.main else 0, "training", "epochs") as advance:
                for epoch in range(run.start, cfg.epochs):
                    run_epoch(run, epoch)
                    advance()
            if not env.main:
                return {"rank": env.rank, "world": env.world}
            return write_run_record(run, config_path)


def run_epoch(run: TrainRun, epoch: int) -> dict:
    """One epoch: train, validate, checkpoint, log (rank 0 of a torchrun job); returns the epoch's record."""
    stats = train_epoch(run, epoch)
    _sync_buffers(run)
    rec = {"epoch": epoch, "lr": stats["lr"], "train_loss": stats["train_loss"],
           "train_samples_per_s": stats["seen"] / stats["seconds"], "epoch_s": stats["seconds"]}
    if run.env.main:
        v_loss, auc = validate(run)
        rec = {**rec, "val_loss": v_loss, "val_auc": auc}
        rec = {k: rec[k] for k in ("epoch", "lr", "train_loss", "val_loss", "val_auc", "train_samples_per_s", "epoch_s")}
        save_epoch(run, epoch, rec)
        log.info("epoch %d/%d  loss %.4f  val_loss %.4f  val_auc %.4f  %.0f samples/s", epoch + 1, run.cfg.epochs,
                 rec["train_loss"], v_loss, auc, rec["train_samples_per_s"])
    _barrier(run.env)
    return rec


def write_run_record(run: TrainRun, config_path: str | None) -> dict:
    """``run_info.json`` (provenance and the summary) next to the checkpoints; returns the summary."""
    cfg = run.cfg
    last = run.history[-1] if run.history else {}
    summary = {"arch": cfg.arch, "n_params": run.n_params, "epochs": cfg.epochs, "best_val_auc": run.best_auc,
               "processes": run.env.world,
               "final_val_auc": last.get("val_auc"), "n_train": len(run.train_ds), "n_val": len(run.val_ds),
               "n_missing_skipped": len(run.train_ds.missing) + len(run.val_ds.missing), "device": str(run.device),
               "amp": str(run.dtype) if run.dtype else "off", "history": run.history}
    atomic_write_json(TrainDir(run.out).run_info, run_info(
        config=cfg.model_dump(mode="json"), config_sha256=run.cfg_sha, seeds={"train": cfg.seed},
        extra={"config_file": config_path, "inputs": run.inputs,
               "config_file_sha256": sha256_file(config_path) if config_path else None, "device": str(run.device),
               "cuda_device": torch.cuda.get_device_name(0) if run.device.type == "cuda" else None,
               "summary": summary}))
    return summary
