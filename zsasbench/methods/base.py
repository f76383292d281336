"""The method contract: what an adapter implements so the harness can run and score it.

An adapter is a subclass of `Method` with a `name`, a dataclass `Config` holding every
hyperparameter, `prepare(context)` once per dataset category, and `predict(images)` returning one
float32 HxW anomaly map per image (any range: the harness normalises per the protocol).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..datasets.base import Sample
from ..errors import UserError
from ..models.base import ModelSpec, Runtime


@dataclass
class PrepareContext:
    """What a method may know about a category before it sees any test image."""

    category: str
    kind: str  # "object" or "texture"
    object_name: str  # what the images show, for prompts ("metal nut", "magnetic tile")
    seed: int
    rng: np.random.Generator
    reference_samples: Callable[[], Sequence[Sample]]  # normal images, never from the test set
    cache_dir: Path | None = None  # where a method may keep per-category stage outputs
    dataset: str = ""


@dataclass
class MethodConfig:
    """Base for method configs: a dataclass whose fields are all hyperparameters (all logged)."""


class Method:
    """Base class of every method adapter."""

    name: ClassVar[str] = ""  # registry / CLI name, e.g. "saa-plus"
    display_name: ClassVar[str] = ""  # leaderboard column, e.g. "SAA+" (defaults to name)
    Config: ClassVar[type] = MethodConfig
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""  # paper / code the adapter follows
    version: ClassVar[str] = "1"  # bump when the maps change for the same config (invalidates cached maps)

    def __init__(self, config: Any = None, runtime: Runtime | None = None):
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{self.name}: config must be {self.Config.__name__}, got {type(self.config).__name__}")
        self.runtime = runtime or Runtime()

    # --- the contract ----------------------------------------------------------------------
    def required_models(self) -> list[ModelSpec]:
        """The weights this method needs with its current config (checked before any compute)."""
        return []

    def prepare(self, context: PrepareContext) -> None:
        """Called once per dataset category before predict."""

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def artifacts(self) -> dict[str, Any]:
        """JSON-able outputs of the last prepare() to save with the run (e.g. generated prompts)."""
        return {}

    def counters(self) -> dict[str, float]:
        """Numbers worth logging after a category (e.g. how often a fallback was taken)."""
        return {}

    # --- helpers ---------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def config_hash_source(self) -> str:
        return json.dumps({"method": self.name, "version": self.version, "config": self.config_dict()},
                          sort_keys=True, default=str)


def config_from_overrides(config_cls: type, overrides: dict[str, str] | None) -> Any:
    """Build a config dataclass, parsing `--set key=value` strings by each field's default type."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UserError(f"{config_cls.__qualname__}: unknown config field(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(fields)}")
    default = config_cls()
    kwargs = {}
    for key, raw in overrides.items():
        kwargs[key] = parse_value(key, raw, getattr(default, key))
    return dataclasses.replace(default, **kwargs)


def parse_value(key: str, raw: str, default: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (list, tuple)):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = [v.strip() for v in raw.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError("expected a list (JSON or comma-separated)")
            if default and all(isinstance(v, (int, float)) for v in default):
                value = [type(default[0])(v) for v in value]
            return type(default)(value)
        if default is None:
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw
        return raw
    except ValueError as exc:
        raise UserError(f"--set {key}={raw}: {exc} (default is {default!r})") from exc
