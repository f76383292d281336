"""Recognize Anything image taggers (RAM, RAM++): model family "ram".

The official `ram` package is not on PyPI; this is a re-implementation of its tagging path
(xinyu1205/recognize-anything at commit 7cb804a8, see docs/models-ram.md) that loads the official checkpoints
`ram_swin_large_14m.pth` / `ram_plus_swin_large_14m.pth` by path or from the Hugging Face cache, plus the
official tag list (`ram_tag_list.txt`) and per-class thresholds (`ram_tag_list_threshold.txt`), both found
beside the checkpoint unless given explicitly.

Differences from the official loader (all deliberate, none changes the numbers):
- Only the tagging path is built (no caption branch, no tokenizer), on the meta device, and the checkpoint's
  tensors are assigned (memory-mapped when the file allows): no 1.9 GB random init, no copy.
- Missing tagging keys, a tag list or threshold file whose length does not match the checkpoint, and a
  `relative_position_bias_table` of the wrong size are errors naming the file. Upstream loads with
  strict=False (silently keeping zero label embeddings) and bicubically resizes bias tables with
  scipy's `interp2d`, which SciPy 1.14 removed; no official RAM checkpoint needs that resize.
- A tied tagging-head tensor missing under its `tagging_head.*` name is taken from its `tag_encoder.*` twin.
- A bare state dict (without the `{'model': ...}` wrapper) is accepted too.
- `tag()` orders tags by probability (descending, then name); `predict()` gives upstream's ascending indices.
"""
from __future__ import annotations

import logging
import math
import pickle
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import DataError, MissingWeightsError, UserError
from .base import Availability, Family, ModelSpec, Runtime, offline, register_family
from .ram_head import HeadConfig, RamConfig, RamNet, RamOutputs
from .ram_swin import SwinConfig

log = logging.getLogger(__name__)

OFFICIAL_REPO = "https://github.com/xinyu1205/recognize-anything"
OFFICIAL_COMMIT = "7cb804a8609e9f4b1a50b7f31436d2df40bb9481"
_RAW_DATA = f"https://raw.githubusercontent.com/xinyu1205/recognize-anything/{OFFICIAL_COMMIT}/ram/data/"
TAG_LIST_FILE = "ram_tag_list.txt"
THRESHOLD_FILE = "ram_tag_list_threshold.txt"
DEFAULT_THRESHOLD = 0.68  # upstream default, used by the tiny-random profile

RAM_SWIN_L = ModelSpec("ram", "xinyu1205/recognize_anything_model", filename="ram_swin_large_14m.pth",
                       variant="ram", role="image tagger")
RAM_PLUS_SWIN_L = ModelSpec("ram", "xinyu1205/recognize-anything-plus-model", filename="ram_plus_swin_large_14m.pth",
                            variant="ram_plus", role="image tagger")
_HUB_DEFAULTS = {"ram": RAM_SWIN_L, "ram_plus": RAM_PLUS_SWIN_L}

# Architectures, selected by the part of the variant after ':' ("ram", "ram_plus:tiny", ...).
ARCHS: dict[str, tuple[SwinConfig, HeadConfig, int]] = {
    # upstream configs/swin/config_swinL_384.json + configs/q2l_config.json, 512-d label/image embeddings
    "swin_l_384": (SwinConfig(), HeadConfig(), 512),
    # same code, small widths: 96x96 input, grids 24/12/6/3, window 3 (shifted windows in stages 0-2)
    "tiny": (SwinConfig(image_size=96, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3),
             HeadConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), 16),
}
TINY_TAGS = ("bottle", "cable", "capsule", "carpet", "fabric", "floor", "grid", "hazelnut", "leather", "metal",
             "nut", "object", "pill", "plastic", "screw", "surface", "table", "texture", "tile", "toothbrush",
             "transistor", "wall", "wood", "zipper")
TINY_DESCRIPTIONS = 3

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Tagger(Protocol):
    def tag(self, images: Sequence[np.ndarray]) -> list[list[str]]: ...


# ---------------------------------------------------------------- variants, configs, files

def parse_variant(variant: str | None) -> tuple[str, str]:
    """'ram' | 'ram_plus', optionally ':<arch>' -> (model, arch)."""
    model, _, arch = (variant or "ram").partition(":")
    arch = arch or "swin_l_384"
    if model not in _HUB_DEFAULTS or arch not in ARCHS:
        raise UserError(f"RAM variant {variant!r} unknown; valid: ram, ram_plus, optionally with "
                        f":{' / :'.join(ARCHS)} (e.g. ram_plus:tiny)")
    return model, arch


def ram_config(model: str, arch: str, num_classes: int, descriptions_per_class: int = 1) -> RamConfig:
    swin, head, embed_dim = ARCHS[arch]
    return RamConfig(variant=model, num_classes=num_classes, descriptions_per_class=descriptions_per_class,
                     embed_dim=embed_dim, swin=swin, head=head)


def read_tag_list(path: str | Path) -> list[str]:
    """Official format: one English tag per line (class index = line number - 1)."""
    path = Path(path)
    names = path.read_text(encoding="utf-8").splitlines()
    blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
    if not names or blank:
        raise DataError(f"{path}: a RAM tag list has one non-empty tag per line; "
                        + (f"line(s) {blank[:5]} are blank" if blank else "the file is empty"))
    return names


def read_thresholds(path: str | Path, num_classes: int) -> np.ndarray:
    """Official format: one probability threshold per line, in tag-list order."""
    path = Path(path)
    values = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            value = float(line.strip())
        except ValueError:
            raise DataError(f"{path}:{lineno}: {line.strip()!r} is not a number (one threshold per line)") from None
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{path}:{lineno}: threshold {value} is outside [0, 1]")
        values.append(value)
    if len(values) != num_classes:
        raise DataError(f"{path}: {len(values)} thresholds for {num_classes} tags; need one per tag")
    return np.asarray(values, dtype=np.float32)


# ---------------------------------------------------------------- checkpoint key handling

def read_checkpoint(path: str | Path) -> Any:
    """torch.load the official .pth on CPU, memory-mapped when the file format allows."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"RAM checkpoint {path} does not exist")
    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError:
            # Official training checkpoints may pickle config objects beside the weights; upstream loads
            # them with full unpickling too. Only do this for a file the user pointed us at.
            log.warning("%s holds non-tensor objects; loading it with full unpickling", path)
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc).lower():
                continue  # legacy (non-zip) serialization cannot be memory-mapped
            raise UserError(f"{path}: cannot be read as a PyTorch checkpoint: {exc}") from exc
    raise AssertionError("unreachable")


def official_state_dict(checkpoint: Any, origin: str) -> dict[str, torch.Tensor]:
    """Upstream `load_checkpoint_swinlarge` key handling: take checkpoint['model'], drop the derived
    `relative_position_index` / `attn_mask` buffers, rename the legacy prefix `vision_multi` to `tagging_head`."""
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        if isinstance(checkpoint, Mapping) and any(str(k).startswith("visual_encoder.") for k in checkpoint):
            state = checkpoint  # a bare state dict
        else:
            raise UserError(f"{origin}: not a RAM checkpoint: expected a dict whose 'model' entry is the state "
                            "dict (as in the official ram_swin_large_14m.pth)")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "relative_position_index" in key or "attn_mask" in key:
            continue
        out[key.replace("vision_multi", "tagging_head")] = value
    return out


def _tied_twin(key: str) -> str | None:
    """Upstream ties the lowest two tag_encoder layers to the tagging head; a checkpoint stores both names."""
    prefix = "tagging_head.encoder.layer."
    if key.startswith(prefix) and key[len(prefix):].split(".", 1)[0] in ("0", "1"):
        return "tag_encoder." + key[len("tagging_head."):]
    return None


def infer_descriptions(state: Mapping[str, torch.Tensor], model: str, num_classes: int, origin: str) -> int:
    if "label_embed" not in state:
        raise UserError(f"{origin}: no 'label_embed' tensor; not a RAM/RAM++ checkpoint")
    rows = int(state["label_embed"].shape[0])
    has_reweight = "reweight_scale" in state
    if has_reweight != (model == "ram_plus"):
        other = "ram_plus" if has_reweight else "ram"
        raise UserError(f"{origin}: this is a {other} checkpoint, but the model variant is {model!r}")
    if rows % num_classes or (model == "ram" and rows != num_classes):
        raise DataError(f"{origin}: label_embed has {rows} rows, which does not fit the tag list's "
                        f"{num_classes} tags ({'1' if model == 'ram' else 'a whole number of'} row(s) per tag)")
    return rows // num_classes


def build_net(state: Mapping[str, torch.Tensor], cfg: RamConfig, origin: str,
              dtype: torch.dtype = torch.float32) -> RamNet:
    """Build RamNet on the meta device and assign the checkpoint's tensors (no random init, no copy)."""
    with torch.device("meta"):
        net = RamNet(cfg)
    expected = net.state_dict()
    chosen: dict[str, torch.Tensor] = {}
    missing, wrong = [], []
    for key, ref in expected.items():
        value = state.get(key)
        if value is None and _tied_twin(key) is not None:
            value = state.get(_tied_twin(key))
        if value is None:
            missing.append(key)
        elif tuple(value.shape) != tuple(ref.shape):
            wrong.append(f"{key} {tuple(value.shape)} (expected {tuple(ref.shape)})")
        else:
            chosen[key] = value.to(dtype)
    if missing:
        raise UserError(f"{origin}: {len(missing)} tensor(s) of the RAM tagging path are missing, e.g. "
                        f"{', '.join(missing[:5])}")
    if wrong:
        raise UserError(f"{origin}: {len(wrong)} tensor(s) have the wrong shape for {cfg.variant} "
                        f"(relative-position tables must have (2*window-1)^2 rows), e.g. {'; '.join(wrong[:3])}")
    net.load_state_dict(chosen, strict=True, assign=True)
    return net.eval()


# ---------------------------------------------------------------- the tagger

def preprocess(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Upstream get_transform(size): Pillow bilinear resize to size x size (aspect not kept), /255,
    ImageNet mean/std; NCHW float32. Images are HxWx3 uint8 RGB."""
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                   else type(image).__name__)
            raise UserError(f"image {i}: the RAM tagger takes HxWx3 uint8 RGB arrays, got {got}")
        resized = Image.fromarray(image, "RGB").resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
        out[i] = ((pixels - _MEAN) / _STD).transpose(2, 0, 1)
    return torch.from_numpy(out)


class RamTagger:
    """RAM / RAM++ tagger: `tag(images)` -> per image, the English tags whose probability exceeds their
    class threshold, by probability (descending), then name."""

    def __init__(self, net: RamNet, tag_names: Sequence[str], thresholds: np.ndarray | float,
                 device: str = "cpu", batch_size: int = 4, weights: str = "real"):
        k = net.cfg.num_classes
        names = list(tag_names)
        thr = np.full(k, thresholds, np.float32) if np.isscalar(thresholds) else np.asarray(thresholds, np.float32)
        if len(names) != k or thr.shape != (k,):
            raise DataError(f"RAM model has {k} classes but got {len(names)} tag names and {thr.size} thresholds")
        if batch_size < 1:
            raise UserError(f"RAM batch_size must be >= 1, got {batch_size}")
        self.net = net.to(device)
        self.tag_names, self.thresholds = names, thr
        self.device, self.batch_size, self.weights = device, batch_size, weights

    @property
    def weights_are_real(self) -> bool:
        return self.weights == "real"

    @property
    def variant(self) -> str:
        return self.net.cfg.variant

    @property
    def image_size(self) -> int:
        return self.net.cfg.swin.image_size

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return preprocess(images, self.image_size)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> RamOutputs:
        """The network on preprocessed pixels [B, 3, S, S] (all intermediates)."""
        dtype = next(self.net.parameters()).dtype
        return self.net(pixels.to(self.device, dtype))

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, K] float32 sigmoid(logits), in tag-list order."""
        k = self.net.cfg.num_classes
        out = np.empty((len(images), k), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            logits = self.forward(self.preprocess(batch)).logits.float()
            out[start:start + len(batch)] = torch.sigmoid(logits).cpu().numpy()
        return out

    def select(self, probs: np.ndarray) -> list[np.ndarray]:
        """Upstream generate_tag: ascending class indices with prob > class threshold (strict)."""
        return [np.flatnonzero(row > self.thresholds) for row in probs]

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.select(self.probabilities(images))

    def names(self, probs: np.ndarray) -> list[list[str]]:
        """Tags above threshold per row of `probs`, by probability (descending), then name."""
        return [[self.tag_names[i] for i in sorted(idx.tolist(), key=lambda i: (-float(row[i]), self.tag_names[i]))]
                for row, idx in zip(probs, self.select(probs))]

    def tag(self, images: Sequence[np.ndarray]) -> list[list[str]]:
        return self.names(self.probabilities(images))


def _torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise UserError(f"dtype {name!r} unknown for RAM; valid: {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_ram_tagger(checkpoint: str | Path | Mapping, variant: str = "ram",
                    tag_list: str | Path | Sequence[str] | None = None,
                    thresholds: str | Path | float | np.ndarray | None = None,
                    device: str = "cpu", dtype: str = "float32", batch_size: int = 4,
                    weights: str = "real") -> RamTagger:
    """Load an official RAM / RAM++ checkpoint.

    checkpoint: path of the .pth, or an already loaded checkpoint object ({'model': state_dict}).
    tag_list: path of ram_tag_list.txt, or the names (default: the file beside the checkpoint).
    thresholds: path of ram_tag_list_threshold.txt, one value for all classes, or an array (default: the file
    beside the tag list file, else beside the checkpoint). variant: 'ram' / 'ram_plus' [':' arch].
    """
    model, arch = parse_variant(variant)
    if isinstance(checkpoint, (str, Path)) and not Path(checkpoint).is_file():
        hub = _HUB_DEFAULTS[model]
        raise MissingWeightsError(f"RAM checkpoint {checkpoint} not found; get it from "
                                  f"https://huggingface.co/{hub.source}/resolve/main/{hub.filename}")
    near = [Path(checkpoint).parent] if isinstance(checkpoint, (str, Path)) else []
    origin = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "<in-memory RAM checkpoint>"
    if tag_list is None:
        if not near:
            raise UserError("load_ram_tagger: give tag_list when the checkpoint is not a file")
        tag_list = near[0] / TAG_LIST_FILE
    if isinstance(tag_list, (str, Path)):
        near.insert(0, Path(tag_list).parent)
        names = read_tag_list(_existing(Path(tag_list), "RAM tag list"))
    else:
        names = list(tag_list)
    if thresholds is None:
        candidates = [d / THRESHOLD_FILE for d in near]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise MissingWeightsError(f"RAM class thresholds {THRESHOLD_FILE} not found in "
                                      f"{', '.join(map(str, dict.fromkeys(p.parent for p in candidates)))}; "
                                      f"get it from {_RAW_DATA}{THRESHOLD_FILE}")
        thresholds = found[0]
    thr = (read_thresholds(thresholds, len(names)) if isinstance(thresholds, (str, Path))
           else thresholds)
    raw = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    state = official_state_dict(raw, origin)
    descriptions = infer_descriptions(state, model, len(names), origin)
    cfg = ram_config(model, arch, len(names), descriptions)
    net = build_net(state, cfg, origin, _torch_dtype(dtype))
    return RamTagger(net, names, thr, device=device, batch_size=batch_size, weights=weights)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingWeightsError(f"{what} {path} not found; get it from {_RAW_DATA}{path.name}")
    return path


# ---------------------------------------------------------------- tiny random profile

def random_state_dict(cfg: RamConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic random weights for `cfg`, by upstream key (numpy generator per key: independent of
    torch's RNG and of parameter order). Matrices ~ N(0, 1/fan_in); norm scales 1 + 0.02 N; biases 0.02 N."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in RamNet(cfg).state_dict().items()}
    out = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if key == "reweight_scale":
            value = np.full(shape, math.log(1 / 0.07))
        elif len(shape) >= 2:
            value = rng.standard_normal(shape) / math.sqrt(int(np.prod(shape[1:])))
        elif key.endswith(".weight"):  # every 1-d weight in this network is a LayerNorm scale
            value = 1.0 + 0.02 * rng.standard_normal(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        out[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return out


def tiny_random_tagger(variant: str = "ram", device: str = "cpu", dtype: str = "float32", seed: int = 0) -> RamTagger:
    """A tiny RAM / RAM++ (same code, small widths, 24 built-in tags, threshold 0.68) with random weights,
    loaded through the official-checkpoint path. Needs no files."""
    model, _ = parse_variant(variant)
    cfg = ram_config(model, "tiny", len(TINY_TAGS), TINY_DESCRIPTIONS if model == "ram_plus" else 1)
    checkpoint = {"model": random_state_dict(cfg, seed)}
    return load_ram_tagger(checkpoint, f"{model}:tiny", tag_list=TINY_TAGS, thresholds=DEFAULT_THRESHOLD,
                           device=device, dtype=dtype, weights="random")


# ---------------------------------------------------------------- family registration

def _is_local(spec: ModelSpec) -> bool:
    src = spec.source
    return Path(src).expanduser().exists() or src.startswith(("/", ".", "~")) or src.endswith(".pth")


def _checkpoint_name(spec: ModelSpec) -> str:
    model, _ = parse_variant(spec.variant)
    return spec.filename or _HUB_DEFAULTS[model].filename


def _cached_hub_file(spec: ModelSpec) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.source, _checkpoint_name(spec), revision=spec.revision)
    return Path(found) if isinstance(found, str) else None


def _local_checkpoint(spec: ModelSpec) -> Path:
    src = Path(spec.source).expanduser()
    return src / _checkpoint_name(spec) if src.is_dir() or not src.suffix else src


def _fetch_tag_files(folder: str) -> str:
    return " && ".join(f'curl -L -o "{folder}/{name}" {_RAW_DATA}{name}' for name in (TAG_LIST_FILE, THRESHOLD_FILE))


def _resolve_checkpoint(spec: ModelSpec) -> Path | None:
    """The checkpoint path (local source, or the Hugging Face cache); None when a hub file is not cached."""
    return _local_checkpoint(spec) if _is_local(spec) else _cached_hub_file(spec)


def ram_availability(spec: ModelSpec) -> Availability:
    model, _ = parse_variant(spec.variant)
    filename = _checkpoint_name(spec)
    ckpt = _resolve_checkpoint(spec)
    have_ckpt = ckpt is not None and ckpt.is_file()
    have_tags = have_ckpt and all((ckpt.parent / n).is_file() for n in (TAG_LIST_FILE, THRESHOLD_FILE))
    if have_ckpt and have_tags:
        return Availability(True, str(ckpt), ckpt.stat().st_size, "")
    if _is_local(spec):
        hub = _HUB_DEFAULTS[model]
        steps = [] if have_ckpt else [
            f'mkdir -p "{ckpt.parent}"',
            f'curl -L -o "{ckpt}" https://huggingface.co/{hub.source}/resolve/main/{hub.filename}']
        steps.append(_fetch_tag_files(str(ckpt.parent)))
        location = str(ckpt)
    elif have_ckpt:
        steps, location = [_fetch_tag_files(str(ckpt.parent))], str(ckpt)
    else:
        from huggingface_hub.constants import HF_HUB_CACHE

        rev = f" --revision {spec.revision}" if spec.revision else ""
        # `hf download` prints the cached file's path; the tag files go beside it
        steps = [f'd=$(dirname "$(hf download {spec.source} {filename}{rev})")', _fetch_tag_files("$d")]
        location = f"{HF_HUB_CACHE} ({spec.source}/{filename})"
    how = " && ".join(steps) + f"   (tag files: {OFFICIAL_REPO}/tree/{OFFICIAL_COMMIT}/ram/data)"
    return Availability(False, location, ckpt.stat().st_size if have_ckpt else None, how)


def _family_load(spec: ModelSpec, runtime: Runtime) -> RamTagger:
    av = ram_availability(spec)
    ckpt = _resolve_checkpoint(spec)
    if not av.present:
        if _is_local(spec) or (ckpt is not None and ckpt.is_file()) or offline():
            raise MissingWeightsError(f"RAM weights for {spec.describe()} not found at {av.location}. "
                                      f"Get them with: {av.how_to_get}")
        from huggingface_hub import hf_hub_download  # online: download as usual; tag files still needed beside it

        ckpt = Path(hf_hub_download(spec.source, _checkpoint_name(spec), revision=spec.revision))
    return load_ram_tagger(ckpt, spec.variant or "ram", device=runtime.torch_device, dtype=runtime.dtype)


def _family_tiny(spec: ModelSpec, runtime: Runtime) -> RamTagger:
    model, _ = parse_variant(spec.variant)
    return tiny_random_tagger(model, device=runtime.torch_device, dtype=runtime.dtype)


register_family("ram", Family(load=_family_load, availability=ram_availability, tiny_random=_family_tiny))

__all__ = ["RAM_PLUS_SWIN_L", "RAM_SWIN_L", "RamTagger", "Tagger", "load_ram_tagger", "preprocess",
           "ram_availability", "read_tag_list", "read_thresholds", "tiny_random_tagger"]
