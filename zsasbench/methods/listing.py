"""Rows for `zsasbench methods`: what is registered, where from, what it needs, whether it can run here."""
from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import UserError
from ..models.base import ModelSpec, availability
from . import BUILTIN_METHODS, ENTRY_POINT_GROUP, method_class


def _source(name: str) -> str:
    if name in BUILTIN_METHODS:
        return "built-in"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            dist = getattr(ep, "dist", None)
            return f"entry point ({dist.name if dist else ep.value})"
    return "?"


def _specs(name: str) -> list[ModelSpec]:
    return method_class(name)().required_models()


def required_specs(names: list[str]) -> list[ModelSpec]:
    """Every model the given methods need with their default configs (methods that fail to import skipped)."""
    specs: list[ModelSpec] = []
    for name in names:
        try:
            specs.extend(s for s in _specs(name) if s not in specs)
        except (UserError, ImportError):
            continue
    return specs


def method_rows(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        row = {"name": name, "source": _source(name)}
        try:
            cls = method_class(name)
            row.update(display_name=cls.display_name or name, description=cls.description,
                       reference=cls.reference)
            models = []
            for spec in _specs(name):
                try:
                    av = availability(spec)
                    models.append({"spec": spec.describe(), "role": spec.role, "present": av.present,
                                   "location": av.location, "how_to_get": av.how_to_get})
                except UserError as exc:
                    models.append({"spec": spec.describe(), "role": spec.role, "present": False,
                                   "location": "", "how_to_get": str(exc)})
            row["models"] = models
            row["ready"] = all(m["present"] for m in models)
        except (UserError, ImportError) as exc:
            row.update(models=[], ready=False, error=str(exc))
        rows.append(row)
    return rows
