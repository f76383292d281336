"""Shared helpers for model families: where a source lives, whether it is present, how to get it.

A `ModelSpec.source` is one of
- an http(s) URL (an LLM endpoint, or a checkpoint URL),
- a local file or folder (absolute, relative, or `~`-prefixed; anything that exists on disk counts),
- a Hugging Face hub id (`owner/name` or `name`), looked up in the local hub cache without a download.

Every family's `availability(spec)` can be built from `source_availability`; its `load` calls
`require_present` first so that a missing model fails before any compute with the exact command or URL.
The hub cache directory is read from the environment on every call (HF_HUB_CACHE, HF_HOME,
XDG_CACHE_HOME), so tests and users can point it elsewhere at any time.
"""
from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import MissingWeightsError
from .base import Availability, ModelSpec, offline

# File names that mark a source as a path even when it does not exist (so a typo in a checkpoint path
# is reported as a missing file, not looked up on the hub).
PATH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".gguf", ".onnx", ".json", ".txt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def is_local(source: str) -> bool:
    """True when `source` names a local file or folder (existing or not)."""
    if is_url(source) or source.startswith("pypi:"):
        return False
    if Path(source).expanduser().exists():
        return True
    if source.startswith(("/", "./", "../", "~")):
        return True
    return source.lower().endswith(PATH_SUFFIXES) or not _HUB_ID.match(source)


def is_hub_id(source: str) -> bool:
    return not is_url(source) and not source.startswith("pypi:") and not is_local(source)


def local_path(source: str) -> Path:
    return Path(source).expanduser().resolve()


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set: never try to download."""
    if offline():
        return True
    return os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=None)
def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (checked once per process)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    return _reachable(endpoint.hostname or "huggingface.co", port, timeout)


def can_download() -> bool:
    """True when a missing hub model may be downloaded now (not offline, hub reachable)."""
    return not hub_offline() and hub_reachable()


def path_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a folder (symlinks followed, each blob once)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    seen: set[Path] = set()
    total = 0
    for item in sorted(path.rglob("*")):
        if item.is_file():
            real = item.resolve()
            if real not in seen:
                seen.add(real)
                total += real.stat().st_size
    return total


def human_size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    size = float(size_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def hub_snapshot(repo_id: str, revision: str | None = None, required: tuple[str, ...] = ("config.json",),
                 cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` holding every `required` file, or None.

    `required` entries may be alternatives separated by "|" (e.g. "model.safetensors|pytorch_model.bin").
    """
    from huggingface_hub import try_to_load_from_cache

    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    folder: Path | None = None
    for entry in required:
        found = None
        for name in entry.split("|"):
            hit = try_to_load_from_cache(repo_id, name, cache_dir=str(cache), revision=revision)
            if isinstance(hit, str):
                found = Path(hit)
                break
        if found is None:
            return None
        # the snapshot folder is the part of the path above the file name (which may contain "/")
        folder = Path(str(found)[: -len(name)].rstrip("/"))
    return folder


def hub_command(repo_id: str, revision: str | None = None, files: tuple[str, ...] = ()) -> str:
    """The exact command that puts `repo_id` into the local hub cache (huggingface_hub's `hf` CLI)."""
    parts = ["hf", "download", repo_id, *files]
    if revision:
        parts += ["--revision", revision]
    return " ".join(parts)


def hub_availability(repo_id: str, revision: str | None = None, required: tuple[str, ...] = ("config.json",),
                     how_to_get: str | None = None) -> Availability:
    snap = hub_snapshot(repo_id, revision, required)
    how = how_to_get or hub_command(repo_id, revision)
    if snap is None:
        where = f"hf://{repo_id}" + (f"@{revision}" if revision else "") + f" (cache {hub_cache_dir()})"
        return Availability(False, where, None, how)
    return Availability(True, str(snap), path_size(snap), how)


def local_availability(source: str, how_to_get: str) -> Availability:
    path = local_path(source)
    if path.exists():
        return Availability(True, str(path), path_size(path), how_to_get)
    return Availability(False, str(path), None, how_to_get)


def source_availability(spec: ModelSpec, required: tuple[str, ...] = ("config.json",),
                        how_to_get: str | None = None) -> Availability:
    """Availability of a local-path or hub-id spec (the common case for every family)."""
    if is_local(spec.source):
        how = how_to_get or f"put the model files at {local_path(spec.source)}"
        return local_availability(spec.source, how)
    return hub_availability(spec.source, spec.revision, required, how_to_get)


def require_present(spec: ModelSpec, av: Availability) -> None:
    """Raise MissingWeightsError (before any compute) when `spec` cannot load on this machine.

    A hub id that is not cached is only an error when downloading is impossible (offline or no network);
    otherwise the family's loader downloads it as usual.
    """
    if av.present:
        return
    if is_hub_id(spec.source) and can_download():
        return
    reason = "not on this machine"
    if is_hub_id(spec.source):
        reason = ("not in the local hub cache and downloads are off (HF_HUB_OFFLINE=1)" if hub_offline()
                  else "not in the local hub cache and the hub is unreachable")
    raise MissingWeightsError(
        f"model {spec.describe()} ({spec.role or spec.family}) is {reason}: looked at {av.location}. "
        f"Get it with: {av.how_to_get}"
    )


def torch_dtype(name: str):
    """The torch dtype a Runtime.dtype names."""
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in table:
        from ..errors import UserError

        raise UserError(f"unknown dtype {name!r}; valid: {', '.join(table)}")
    return table[name]


def hub_kwargs(spec: ModelSpec) -> dict:
    """from_pretrained keyword arguments for a hub-id spec (revision pinned, cache from the environment)."""
    if not is_hub_id(spec.source):
        return {}
    kwargs = {"cache_dir": str(hub_cache_dir())}
    if spec.revision:
        kwargs["revision"] = spec.revision
    return kwargs


def pretrained_location(spec: ModelSpec) -> str:
    """What to hand to `from_pretrained`: the resolved local folder, or the hub id."""
    if is_local(spec.source):
        return str(local_path(spec.source))
    return spec.source


def quiet_transformers() -> None:
    """Silence transformers' progress bars and load reports (they go to stderr in every run)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # transformers absent: nothing to silence
        pass
