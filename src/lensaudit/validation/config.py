"""Typed settings of ``lensaudit validate`` (YAML, validated; unknown keys are errors).

A validation is a matrix: universes (mock surveys whose true lenses differ in stated ways) x injection families x
injection seeds. Every rule that decides a cell's outcome is fixed here, before any run: the closure tolerance,
the operating point, the gate's alpha (in the realism config) and which gate statistic is correlated with the
closure error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lensaudit.inject.config import FamilyConfig

#: Library specs a validation family may name besides a file: the universe's own procedural stamp library
#: (written by ``mock build``) and the halves of the XDF library the validation builds.
LIBRARY_SPECS = ("mock", "xdf:A", "xdf:B")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Universe(_Strict):
    """One mock universe: a name, what differs from the default mock (nested :class:`MockConfig` settings), and
    the stated amounts in words (they go into the matrix and the report)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    mock: dict = Field(default_factory=dict, description="MockConfig settings (area and seed come from the "
                                                         "validation); lenses.sources may be xdf:A or xdf:B")
    survey: str | None = Field(None, description="an existing mock survey folder instead of building one")


class ValidationFamily(_Strict):
    """An injection family; ``stamp_library``: ``mock`` (the universe's own procedural library), ``xdf:A``,
    ``xdf:B`` (halves of the validation's XDF library) or a library file (``PATH`` or ``PATH:A|B``)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["sersic", "clumpy", "stamps", "planted"]
    stamp_library: str | None = None

    @model_validator(mode="after")
    def _lib(self) -> ValidationFamily:
        if self.kind == "stamps" and not self.stamp_library:
            raise ValueError(f"families.{self.name}: a stamps family needs stamp_library ({', '.join(LIBRARY_SPECS)} "
                             f"or a file)")
        if self.kind != "stamps" and self.stamp_library:
            raise ValueError(f"families.{self.name}: stamp_library is for stamps families only")
        if self.stamp_library and self.stamp_library.startswith("xdf:") and self.stamp_library not in LIBRARY_SPECS:
            raise ValueError(f"families.{self.name}: {self.stamp_library!r}: the XDF library has halves A and B only")
        return self


class ValidationRules(_Strict):
    """The pre-registered decision rules of a cell."""

    tolerance: float = Field(0.03, gt=0, lt=1, description="closure holds when |Delta| <= this (completeness)")
    operating_point: str = Field("p>=0.5", description="the operating point of the primary statistic")
    gate_statistic: Literal["probe_auc"] = Field("probe_auc", description="correlated with |Delta| across cells")
    exclude_planted_from_correlation: bool = Field(True, description="the planted control is reported apart: its "
                                                   "huge error would make any gate statistic look predictive")
    real_galaxy_cell: tuple[str, str] | None = Field(None, description="(universe, family) of the real-galaxy target: "
                                                     "closure within the tolerance with the power to see it")


class ValidationConfig(_Strict):
    out: str = "validation_out"
    area_deg2: float = Field(64.0, ge=0.0625, le=64.0, description="mock patch per universe, deg^2")
    mock_seed: int = Field(42, ge=0, lt=2**32, description="every universe's mock seed (the same sky, other lenses)")
    universes: tuple[Universe, ...]
    families: tuple[ValidationFamily, ...]
    seeds: tuple[int, ...] = Field((0, 1, 2), description="injection seeds")
    catalog_config: str = "catalog/mock_demo.yaml"
    train_config: str = "train/demo.yaml"
    selection_config: str = Field("selection/demo.yaml", description="grid, priors, engine (families replaced)")
    realism_config: str = Field("selection/demo_realism.yaml", description="the gate's probe, alpha and matching")
    n_per_cell: int | None = Field(None, ge=1, description="injections per grid cell (default: the selection config's)")
    epochs: int | None = Field(None, ge=1, description="training epochs (default: the training config's)")
    fetch_limit: int | None = Field(None, ge=10, description="cutouts fetched per universe (default: all)")
    xdf_library: str | None = Field(None, description="an XDF library folder already built (lensaudit sources "
                                    "build-xdf) to copy instead of building one; its provenance and settings are "
                                    "checked")
    closure_n_boot: int = Field(1000, ge=50)
    closure_min_true: int = Field(10, ge=1)
    rules: ValidationRules = ValidationRules()

    @model_validator(mode="after")
    def _check(self) -> ValidationConfig:
        for what, names in (("universes", [u.name for u in self.universes]), ("families", [f.name for f in self.families])):
            if not names:
                raise ValueError(f"{what}: at least one is needed")
            if len(set(names)) != len(names):
                raise ValueError(f"{what}: names must be unique, got {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: distinct non-negative injection seeds needed, got {list(self.seeds)}")
        cell = self.rules.real_galaxy_cell
        if cell and (cell[0] not in {u.name for u in self.universes} or cell[1] not in {f.name for f in self.families}):
            raise ValueError(f"rules.real_galaxy_cell: {list(cell)} names a universe or family this config lacks")
        return self

    def family_configs(self, mock_library: str, xdf_library: str) -> list[FamilyConfig]:
        """The selection run's families with their library specs resolved for one universe."""
        out = []
        for f in self.families:
            lib = f.stamp_library
            if lib == "mock":
                lib = mock_library
            elif lib in ("xdf:A", "xdf:B"):
                lib = f"{xdf_library}:{lib[-1]}"
            out.append(FamilyConfig(name=f.name, kind=f.kind, stamp_library=lib))
        return out


__all__ = ["LIBRARY_SPECS", "Universe", "ValidationConfig", "ValidationFamily", "ValidationRules"]
