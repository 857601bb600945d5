"""Datasets and preprocessing. ``preprocess``/``augment`` need only numpy; ``dataset`` needs torch."""

from lensaudit.data.augment import augment, augment_params
from lensaudit.data.preprocess import PRESETS, PreprocessConfig, preprocess, raw_robust

__all__ = ["augment", "augment_params", "PRESETS", "PreprocessConfig", "preprocess", "raw_robust"]
