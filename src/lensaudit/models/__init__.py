"""Lens-finder architectures behind one factory (needs the ``train`` extra: torch, torchvision)."""

from lensaudit.models import archs as _archs  # noqa: F401  (registers the architectures)
from lensaudit.models.registry import (
    ModelSpec,
    build_model,
    classifier_layer,
    count_parameters,
    list_models,
    model_spec,
    register_model,
)

__all__ = ["ModelSpec", "build_model", "classifier_layer", "count_parameters", "list_models", "model_spec",
           "register_model"]
