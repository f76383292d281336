"""Method registry: built-in adapters plus any registered through the `zsasbench.methods` entry point group.

A separate pip package adds a method by declaring, in its pyproject.toml:

    [project.entry-points."zsasbench.methods"]
    my-method = "my_package.module:MyMethod"
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import UserError
from ..models.base import Runtime
from .base import Method, MethodConfig, PrepareContext, config_from_overrides

ENTRY_POINT_GROUP = "zsasbench.methods"

# name -> "module:Class"; imported on first use so heavy dependencies load only when needed.
BUILTIN_METHODS: dict[str, str] = {
    "random": "zsasbench.methods.random_noise:RandomNoise",
    "local-contrast": "zsasbench.methods.local_contrast:LocalContrast",
    "iap-as": "zsasbench.methods.iap_as:IAPAS",
    "clipseg": "zsasbench.methods.clipseg:CLIPSeg",
    "winclip": "zsasbench.methods.winclip:WinCLIP",
    "sdp": "zsasbench.methods.sdp:SDP",
    "saa-plus": "zsasbench.methods.saa_plus:SAAPlus",
    "evf-sam": "zsasbench.methods.evf_sam:EVFSAM",
}


def _registry() -> dict[str, str]:
    registry = dict(BUILTIN_METHODS)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        registry.setdefault(ep.name, ep.value)
    return registry


def method_names() -> list[str]:
    return list(_registry())


def method_class(name: str) -> type[Method]:
    registry = _registry()
    if name not in registry:
        raise UserError(f"unknown method {name!r}; valid: {', '.join(registry)}")
    target = registry[name]
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"method {name!r}: cannot import {target} ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"method {name!r}: {target} is not a zsasbench Method subclass")
    return cls


def create_method(name: str, overrides: dict[str, str] | None = None, runtime: Runtime | None = None) -> Method:
    cls = method_class(name)
    return cls(config_from_overrides(cls.Config, overrides), runtime=runtime)


__all__ = ["ENTRY_POINT_GROUP", "Method", "MethodConfig", "PrepareContext", "create_method", "method_class",
           "method_names"]
