"""One factory for every lens-finder architecture: ``build_model(arch, **kwargs)``.

Each registered architecture declares the input it expects (bands, stamp size, preprocessing);
that spec travels with every checkpoint (timm-style), so a checkpoint knows how to feed itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lensaudit.data.preprocess import PreprocessConfig
from lensaudit.errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    fn: Callable[..., nn.Module]
    description: str
    default_preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    reference_params: int | None = None  # the published parameter count, where one exists


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, reference_params: int | None = None,
                   default_preprocess: PreprocessConfig | None = None):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, description, default_preprocess or PreprocessConfig(), reference_params)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_spec(arch: str) -> ModelSpec:
    if arch not in _REGISTRY:
        raise InputError(f"unknown architecture {arch!r}; available: {list_models()}")
    return _REGISTRY[arch]


def build_model(arch: str, **kwargs) -> nn.Module:
    """Build a registered architecture (one logit output) with its keyword arguments."""
    spec = model_spec(arch)
    try:
        return spec.fn(**kwargs)
    except TypeError as exc:
        raise InputError(f"model {arch!r}: bad arguments {kwargs} ({exc})") from exc


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final Linear layer (its input is the penultimate-layer feature vector)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear layer")
    return last


def load_weights_file(model: nn.Module, path: str, skip_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load a local state-dict file (``weights_only=True``), skipping keys with ``skip_prefixes``; returns skipped keys."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    skipped = [k for k in state if k.startswith(skip_prefixes)]
    own = model.state_dict()
    bad = [k for k in state if k not in skipped and (k not in own or own[k].shape != state[k].shape)]
    if bad:
        raise InputError(f"weights file {path}: {len(bad)} tensor(s) do not fit {type(model).__name__}, e.g. {bad[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped
