"""The input/output contract of a lens finder that ``lensaudit`` did not train: a small YAML file beside the model.

A model file ``finder.onnx`` (or ``finder.ts``, TorchScript) is read with ``finder.spec.yaml``::

    format: lensaudit-scorer-spec-1
    bands: [g, r, z]          # the model's input channels, in order, taken from the g, r, z cutout
    stamp_size: 101           # side of the raw cutout the preprocessing starts from (pixels)
    preprocess:               # one of the project's normalisations, by name, with its parameters
      name: raw_robust        # (lensaudit.data.preprocess: per band median / MAD of an annulus, clipped)
      r_in_pix: 32.5
      r_out_pix: 45.0
      crop: 40                # centre crop after normalisation: the model sees 40 x 40 pixels
    output: logit             # logit, or probability (in [0, 1])
    features: true            # a second output: the penultimate-layer vector (N, F), for the realism gate

The model's first input takes float32 ``(N, len(bands), S, S)`` with ``S = crop or stamp_size``; its first output is
``(N,)`` or ``(N, 1)``. The spec is checked when it is read (unknown keys, an unknown normalisation, repeated bands)
and again against the model before any scoring (:mod:`lensaudit.scoring.scorers`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lensaudit.data.preprocess import PreprocessConfig
from lensaudit.errors import InputError
from lensaudit.survey.constants import CUTOUT_SIZE

SPEC_FORMAT = "lensaudit-scorer-spec-1"
#: The bands of every cutout the project stores, in their order in the array.
CUTOUT_BANDS = ("g", "r", "z")
#: The normalisations a spec may name: the ``name`` values of :class:`PreprocessConfig`.
NORMALISATIONS = tuple(PreprocessConfig.model_fields["name"].annotation.__args__)


class ScorerSpec(BaseModel):
    """How to feed a model and read its output (see the module docstring for the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["lensaudit-scorer-spec-1"] = SPEC_FORMAT
    bands: tuple[Literal["g", "r", "z"], ...] = Field(CUTOUT_BANDS, min_length=1,
                                                      description="the model's input channels, in order")
    stamp_size: int = Field(CUTOUT_SIZE, description="raw cutout side the preprocessing starts from, pixels")
    preprocess: PreprocessConfig = Field(..., description="normalisation by name, with its parameters")
    output: Literal["logit", "probability"] = Field("logit", description="what the first output holds")
    features: bool = Field(False, description="a second output holds the penultimate-layer features (N, F)")
    description: str = ""

    @field_validator("bands")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"bands {list(v)} repeat a band")
        return v

    @field_validator("stamp_size")
    @classmethod
    def _size(cls, v):
        if v != CUTOUT_SIZE:
            raise ValueError(f"stamp_size {v}: the project's cutouts are {CUTOUT_SIZE} x {CUTOUT_SIZE} pixels "
                             f"(crop them with preprocess.crop)")
        return v

    @field_validator("preprocess", mode="before")
    @classmethod
    def _known(cls, v):
        name = v.get("name", "raw_robust") if isinstance(v, dict) else getattr(v, "name", None)
        if name not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {name!r}; the project's own are {list(NORMALISATIONS)}")
        return v

    @property
    def input_size(self) -> int:
        """Side of the model's input, pixels (after the crop)."""
        return self.preprocess.output_size(self.stamp_size)

    @property
    def band_index(self) -> list[int]:
        """Positions of the spec's bands in a stored cutout (g, r, z)."""
        return [CUTOUT_BANDS.index(b) for b in self.bands]


def spec_path(model: str | os.PathLike) -> Path:
    """``finder.onnx`` -> ``finder.spec.yaml`` (the spec beside the model)."""
    return Path(model).with_suffix(".spec.yaml")


def read_spec(path: str | os.PathLike) -> ScorerSpec:
    """Read and check a spec file (safe YAML); an :class:`InputError` naming the file and the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scorer spec {path}: file not found (a model other than a lensaudit checkpoint needs its "
                         f"spec beside it: bands, preprocess, output; see lensaudit.scoring.spec)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"scorer spec {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"scorer spec {path}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return ScorerSpec(**raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "spec"
        raise InputError(f"scorer spec {path}: {where}: {e['msg']}") from None


def write_spec(spec: ScorerSpec, path: str | os.PathLike) -> Path:
    from lensaudit.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return Path(path)
