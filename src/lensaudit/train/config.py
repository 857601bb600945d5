"""Typed training configuration (``configs/train/*.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lensaudit.data.preprocess import PreprocessConfig


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["step", "cosine", "constant"] = "step"
    milestones: tuple[int, ...] = Field((80, 130), description="step: epochs at which the rate is multiplied by gamma")
    gamma: float = Field(0.5, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")


class TrainConfig(BaseModel):
    """One training run. Paths are resolved relative to the working directory."""

    model_config = ConfigDict(extra="forbid")
    manifest: str = Field(..., description="training manifest (Parquet) from `lensaudit catalog build`")
    store: str = Field(..., description="cutout store holding the manifest's cutouts")
    out: str = Field("train_out", description="run folder: checkpoints, metrics.jsonl, run_info.json")
    arch: str = "bottleneck_resnet"
    model_kwargs: dict = Field(default_factory=dict)
    preprocess: PreprocessConfig = PreprocessConfig()
    train_split: str = "train"
    val_split: str = "val"
    epochs: int = Field(160, ge=1)
    batch_size: int = Field(256, ge=1, description="micro-batch per optimiser step part")
    effective_batch: int | None = Field(None, description="gradient accumulation up to this many samples per step")
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = Field(42, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA, off on CPU")
    channels_last: bool = True
    compile: bool = False
    num_workers: int = Field(0, ge=0)
    cache: bool = Field(True, description="preprocess each split once into memory (fine up to ~10^5 cutouts)")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (None: torch default)")
    deterministic: bool = Field(True, description="deterministic algorithms (bitwise resume on CPU)")
    checkpoint_every: int = Field(10, ge=1, description="also keep epoch_NNNN.pt every N epochs")
    on_missing: Literal["error", "skip"] = "error"
    max_train_samples: int | None = Field(None, ge=1, description="use at most this many training rows (by id)")
    max_val_samples: int | None = Field(None, ge=1, description="use at most this many validation rows (by id)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.effective_batch is not None and self.effective_batch % self.batch_size:
            raise ValueError(f"effective_batch {self.effective_batch} must be a multiple of batch_size {self.batch_size}")
        if self.train_split == self.val_split:
            raise ValueError("train_split and val_split must differ")
        from lensaudit.models import list_models

        if self.arch not in list_models():
            raise ValueError(f"unknown arch {self.arch!r}; available: {list_models()}")
        return self

    @property
    def accum_steps(self) -> int:
        return 1 if self.effective_batch is None else self.effective_batch // self.batch_size

    def lr_at(self, epoch: int) -> float:
        s = self.schedule
        if s.kind == "constant":
            return self.lr
        if s.kind == "step":
            return self.lr * s.gamma ** sum(epoch >= m for m in s.milestones)
        import math

        return s.min_lr + 0.5 * (self.lr - s.min_lr) * (1 + math.cos(math.pi * epoch / self.epochs))
