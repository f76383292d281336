"""Model zoo: one module per foundation-model family; `load(spec, runtime)` is the one entry point."""
from __future__ import annotations

import importlib

from .base import (Availability, Family, ModelSpec, Runtime, availability, check_present, clear_cache, load,
                   register_family, resolve_device)

# Modules that register a family when imported. A module that fails to import (missing optional
# dependency) leaves its family unregistered; `family()` then reports it unknown.
FAMILY_MODULES: tuple[str, ...] = (
    "grounding_dino", "sam", "clipseg", "llm", "timm_backbone", "open_clip", "clip_tagger", "ram", "evf_sam",
)

_imported = False


def _ensure_families_imported() -> None:
    global _imported
    if _imported:
        return
    _imported = True
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":  # a real missing dependency, not an absent module
                raise


__all__ = ["Availability", "Family", "ModelSpec", "Runtime", "availability", "check_present", "clear_cache",
           "load", "register_family", "resolve_device"]
