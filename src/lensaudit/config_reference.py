"""The configuration reference: every key of every YAML configuration, written from the typed models themselves.

``lensaudit config-reference`` prints it (``--out`` writes it atomically); ``docs/configuration.md`` is its output,
and a test keeps the two equal, so a default, a constraint or a meaning changed in code cannot leave the
documentation behind. Per configuration: the key (nested settings dotted, list items as ``key[].sub``), its type,
its default (JSON; ``required`` when it has none), its constraint and its meaning. Rules across several keys (a
lower bound below an upper bound, no training split among audited hosts, ...) are checked when a file is loaded and
are not listed here.

Written by hand because pydantic's JSON schema loses what a reader needs: the defaults of nested settings as the
enclosing configuration sets them (a selection run's priors are not the bare :class:`Priors` defaults) and the
constraints next to the key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class ConfigDoc:
    """One documented configuration: the command that reads it and its model."""

    command: str
    model: type[BaseModel]


def documented_configs() -> list[ConfigDoc]:
    """Every configuration a ``lensaudit`` command reads with ``--config``, in pipeline order."""
    from lensaudit.catalog.config import CatalogConfig
    from lensaudit.cutouts.client import FetchConfig
    from lensaudit.ensemble.config import EnsembleConfig
    from lensaudit.evaluate.config import EvalConfig
    from lensaudit.mock.config import MockConfig
    from lensaudit.realism.gate import RealismConfig
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.train.config import TrainConfig
    from lensaudit.validation.config import ValidationConfig

    return [ConfigDoc("mock build", MockConfig), ConfigDoc("catalog build", CatalogConfig),
            ConfigDoc("cutouts fetch", FetchConfig), ConfigDoc("train", TrainConfig), ConfigDoc("evaluate", EvalConfig),
            ConfigDoc("selection run", SelectionConfig), ConfigDoc("realism", RealismConfig),
            ConfigDoc("ensemble run", EnsembleConfig), ConfigDoc("validate", ValidationConfig)]


#: annotated-types constraint -> how the reference writes it
_CONSTRAINTS = {"Ge": ">= {}", "Gt": "> {}", "Le": "<= {}", "Lt": "< {}", "MinLen": "length >= {}",
                "MaxLen": "length <= {}", "MultipleOf": "multiple of {}"}


def type_name(annotation) -> str:
    """A reader's spelling of a field's type: ``int``, ``tuple[float, float]``, ``Literal['a', 'b']``,
    ``FamilyConfig`` (modules left out)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", re.sub(r"\b(?:[a-z_][\w]*\.)+([A-Z_]\w*)", r"\1", text))


def constraint_text(metadata: list) -> str:
    """The field's bounds and lengths (pydantic keeps them as annotated-types objects), joined by commas."""
    out = []
    for m in metadata:
        name = type(m).__name__
        if name in _CONSTRAINTS:
            out.append(_CONSTRAINTS[name].format(getattr(m, dataclasses.fields(m)[0].name)))
    return ", ".join(out)


def _json(value) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, tuple | list) and any(isinstance(v, BaseModel) for v in value):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return json.dumps(value, default=str, separators=(", ", ": "))


def _model_of(annotation) -> tuple[type[BaseModel] | None, bool]:
    """(the settings model a field holds, whether it is a list of them) or (None, False)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis and a is not type(None)]
    if typing.get_origin(annotation) in (tuple, list) and len(args) == 1 and isinstance(args[0], type) \
            and issubclass(args[0], BaseModel):
        return args[0], True
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):   # Model | None
        return args[0], False
    return None, False


def rows(model: type[BaseModel], instance: BaseModel | None = None, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """(key, type, default, constraint, meaning) of every field of ``model``, nested settings expanded after their
    own row with the defaults ``instance`` (the enclosing default) gives them."""
    for name, f in model.model_fields.items():
        if instance is not None:
            value, has = getattr(instance, name), True
        elif f.default is not PydanticUndefined:
            value, has = f.default, True
        elif f.default_factory is not None:
            value, has = f.default_factory(), True
        else:
            value, has = None, False
        key = prefix + name
        sub, many = _model_of(f.annotation)
        shown = ("(the rows below)" if sub is not None and not many and isinstance(value, BaseModel) else _json(value)) \
            if has else "required"
        yield key, type_name(f.annotation), shown, constraint_text(f.metadata), " ".join((f.description or "").split())
        if sub is not None:
            yield from rows(sub, value if has and not many and isinstance(value, BaseModel) else None,
                            key + ("[]." if many else "."))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if text else ""


def reference_markdown(configs: list[ConfigDoc] | None = None) -> str:
    """The whole reference as Markdown: one section and table per configuration."""
    configs = documented_configs() if configs is None else configs
    out = ["# Configuration reference", "",
           "Generated by `lensaudit config-reference` from the typed models (a test keeps this file equal to its "
           "output). Every key of every YAML configuration, with its type, default (JSON), constraint and meaning; "
           "unknown keys are errors. Nested settings are dotted (`engine.oversample`), items of a list of settings "
           "are written `families[].kind`. Rules across several keys are checked on load and are not listed.", ""]
    for c in configs:
        doc = " ".join((c.model.__doc__ or "").strip().split("\n\n")[0].split())
        out += [f"## `lensaudit {c.command} --config` ({c.model.__name__})", ""]
        if doc and not doc.startswith(("Usage docs", "A base class")):
            out += [doc, ""]
        out += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(x) if i else f"`{x}`" for i, x in enumerate(r)) + " |" for r in rows(c.model)]
        out.append("")
    return "\n".join(out)


__all__ = ["ConfigDoc", "constraint_text", "documented_configs", "reference_markdown", "rows", "type_name"]
