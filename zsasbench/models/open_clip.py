"""open_clip family ("open-clip"): CLIP image/text encoders for WinCLIP and SDP.

Spec sources:
  - a pretrained tag of the variant, e.g. ModelSpec("open-clip", "laion400m_e31", variant="ViT-B-16-plus-240");
    loaded from the local Hugging Face cache or open_clip's URL cache (~/.cache/clip), downloaded only online;
  - a local checkpoint file (.pt/.pth/.bin/.safetensors state dict) with `variant` naming the architecture;
  - a local folder in open_clip's hub layout (open_clip_config.json + open_clip_pytorch_model.bin or
    open_clip_model.safetensors), `variant` optional;
  - "hf-hub:org/name" (an open_clip hub repo), from the local cache when offline.

`OpenClip` wraps the model and gives WinCLIP/SDP the pieces of the visual tower they run themselves
(patch embedding, the residual blocks in a fixed batch-first layout, pooling) so that their window and
dual-path code does not depend on open_clip's internal layout: open_clip >= 2.26 runs its transformer
batch-first, earlier releases sequence-first; `run_blocks` handles both.
"""
from __future__ import annotations

import json
import os
from copy import deepcopy
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import MissingWeightsError, UserError
from .base import Availability, Family, ModelSpec, Runtime, offline, register_family

FAMILY = "open-clip"
CLIP_B16_PLUS_240 = ModelSpec(FAMILY, "laion400m_e31", variant="ViT-B-16-plus-240",
                              role="CLIP image/text encoder")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_CONFIG_NAME = "open_clip_config.json"
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


class OpenClip:
    """An open_clip CLIP model (eval mode) with its tokenizer and preprocessing constants.

    Image helpers take and return batch-first tensors (B, tokens, width); token 0 is the class token and
    token 1 + r * grid + c is patch (r, c).
    """

    def __init__(self, model, tokenizer, *, mean: Sequence[float], std: Sequence[float], name: str,
                 source: str, device: str, weights_are_real: bool):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.name = name
        self.source = source
        self.device = torch.device(device)
        self.weights_are_real = weights_are_real
        visual = model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise UserError(f"open-clip {name}: only ViT image towers are supported (got {type(visual).__name__})")
        self.visual = visual
        self.image_size = tuple(int(v) for v in visual.image_size)
        self.patch_size = tuple(int(v) for v in visual.patch_size)
        self.grid_size = tuple(int(v) for v in visual.grid_size)
        self.width = int(visual.class_embedding.shape[0])
        self.embed_dim = int(visual.output_dim)
        self.dtype = visual.conv1.weight.dtype

    # --- text ----------------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]):
        if isinstance(prompts, str):
            raise TypeError("tokenize expects a list of prompts, not one string")
        return self.tokenizer(list(prompts)).to(self.device)

    def encode_text(self, prompts: Sequence[str], normalize: bool = False, batch_size: int = 256):
        """Text embeddings (N, embed_dim) after the text projection; unnormalised unless asked."""
        import torch

        prompts = list(prompts)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                out.append(self._encode_tokens_text(self.tokenize(prompts[i:i + batch_size])))
        emb = torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=self.device)
        return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb

    def _encode_tokens_text(self, text):
        """open_clip's CLIP.encode_text, run only on the first T positions (T = last EOT position + 1).

        The text tower is causal and pools the EOT token (argmax of the ids), so positions after the
        longest prompt's EOT cannot change the result: skipping them is exact and about 5x faster for
        short prompts. Other text towers (custom/HF, non-causal, other pooling) use encode_text as is.
        """
        import torch

        m = self.model
        mask = getattr(m, "attn_mask", None)
        if (mask is None or getattr(m, "text_pool_type", None) != "argmax" or not hasattr(m, "token_embedding")
                or getattr(m, "cls_emb", None) is not None):
            return m.encode_text(text)
        t = int(text.argmax(dim=-1).max()) + 1
        text = text[:, :t]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(text).to(cast) + m.positional_embedding[:t].to(cast)
        seq_first = not getattr(m.transformer, "batch_first", False)  # open_clip < 2.26 runs LND
        x = m.transformer(x.transpose(0, 1) if seq_first else x, attn_mask=mask[:t, :t])
        x = x.transpose(0, 1) if seq_first else x
        x = m.ln_final(x)
        x = x[torch_arange(x), text.argmax(dim=-1)]
        proj = m.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    # --- images --------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray], size: int | tuple[int, int] | None = None,
                   interpolation: str = "bicubic", antialias: bool = True):
        """uint8 HxWx3 RGB images -> normalised (B, 3, h, w) tensor.

        Resizes the float image in [0, 1] with torch (antialiased bicubic by default; the aspect ratio
        is not kept, no crop), as anomalib's WinCLIP pre-processor does; no clamping or rounding.
        """
        import torch
        import torch.nn.functional as F

        h, w = _pair(size) if size is not None else self.image_size
        batch = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise UserError(f"image {i}: expected an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
            t = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).div(255.0)[None]
            if t.shape[-2:] != (h, w):
                t = F.interpolate(t, size=(h, w), mode=interpolation, align_corners=False if interpolation in
                                  ("bilinear", "bicubic") else None, antialias=antialias)
            batch.append(t)
        x = torch.cat(batch)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    def embed_patches(self, pixels):
        """Patch embedding + class token + positional embedding, before ln_pre: (B, 1 + L, width)."""
        import torch

        v = self.visual
        if tuple(pixels.shape[-2:]) != self.image_size:
            raise UserError(f"open-clip {self.name}: input is {tuple(pixels.shape[-2:])}, the model's positional "
                            f"embedding needs {self.image_size}")
        x = v.conv1(pixels.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + v.positional_embedding.to(x.dtype)

    @property
    def blocks(self):
        """The visual residual blocks (open_clip ResidualAttentionBlock modules)."""
        return self.visual.transformer.resblocks

    @property
    def blocks_batch_first(self) -> bool:
        """Whether the blocks expect (B, L, D) (open_clip >= 2.26) or (L, B, D) (older releases)."""
        return bool(getattr(self.visual.transformer, "batch_first", False))

    def run_blocks(self, x, start: int = 0, stop: int | None = None, keep: Iterable[int] = ()):
        """Run blocks[start:stop] on batch-first tokens; returns (tokens, {i: tokens after block i}).

        `keep` uses 1-based block numbers (as papers count layers: 12 = the last block); the kept
        tokens are batch-first, before ln_post.
        """
        blocks = self.blocks
        stop = len(blocks) if stop is None else stop
        keep = set(keep)
        kept = {}
        seq_first = not self.blocks_batch_first
        if seq_first:
            x = x.transpose(0, 1)
        for i in range(start, stop):
            x = blocks[i](x)
            if i + 1 in keep:
                kept[i + 1] = x.transpose(0, 1) if seq_first else x
        if seq_first:
            x = x.transpose(0, 1)
        return x, kept

    def pool(self, x):
        """ln_post on the class token then the visual projection: (B, embed_dim)."""
        pooled = self.visual.ln_post(x[:, 0])
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled

    def encode_tokens(self, x):
        """From tokens before ln_pre (any subset of tokens, class token first) to the pooled embedding."""
        x, _ = self.run_blocks(self.visual.ln_pre(x))
        return self.pool(x)

    def encode_image(self, pixels, normalize: bool = False):
        import torch

        with torch.no_grad():
            emb = self.encode_tokens(self.embed_patches(pixels))
        return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb

    def intermediate_tokens(self, pixels, layers: Iterable[int]):
        """Tokens after the given 1-based blocks (before ln_post), batch-first, in the order asked."""
        import torch

        layers = list(layers)
        bad = [n for n in layers if not 1 <= n <= len(self.blocks)]
        if bad:
            raise UserError(f"open-clip {self.name}: layers {bad} out of range 1..{len(self.blocks)}")
        with torch.no_grad():
            _, kept = self.run_blocks(self.visual.ln_pre(self.embed_patches(pixels)), stop=max(layers),
                                      keep=layers)
        return [kept[n] for n in layers]


def torch_arange(x):
    import torch

    return torch.arange(x.shape[0], device=x.device)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


# --- where a spec loads from ------------------------------------------------------------------------
def _is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(source))


def _tag_cfg(spec: ModelSpec) -> dict:
    import open_clip

    if not spec.variant:
        raise UserError(f"open-clip spec {spec.source!r}: a pretrained tag needs `variant` (an open_clip model "
                        f"name such as ViT-B-16-plus-240)")
    cfg = open_clip.get_pretrained_cfg(spec.variant, spec.source)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.variant)
        raise UserError(f"open-clip: {spec.source!r} is neither an existing file/folder nor a pretrained tag of "
                        f"{spec.variant!r} (tags: {', '.join(tags) or 'none'})")
    return cfg


def _hub_cached(repo: str, filenames: Sequence[str], revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        path = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _resolve(spec: ModelSpec) -> tuple[str | None, str, str]:
    """(local weights path or None, where it would load from, how to get it)."""
    src = spec.source
    if _is_local(src):
        path = Path(os.path.expanduser(src))
        if path.is_dir():
            if not (path / _CONFIG_NAME).is_file():
                return None, str(path), f"put {_CONFIG_NAME} and the weights in {path} (open_clip hub layout)"
            return str(path), str(path), ""
        return (str(path) if path.is_file() else None), str(path), f"place the checkpoint file at {path}"
    if src.startswith("hf-hub:"):
        repo = src[len("hf-hub:"):]
        cfg = _hub_cached(repo, [_CONFIG_NAME], spec.revision)
        weights = _hub_cached(repo, _HF_WEIGHT_NAMES, spec.revision)
        rev = f" --revision {spec.revision}" if spec.revision else ""
        how = f"hf download {repo} {_CONFIG_NAME} {_HF_WEIGHT_NAMES[1]}{rev}"
        return (str(Path(cfg).parent) if cfg and weights else None), f"HF cache: {repo}", how
    cfg = _tag_cfg(spec)
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else list(_HF_WEIGHT_NAMES)
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        found = _hub_cached(repo, names, spec.revision)
        if found:
            return found, found, ""
    url = cfg.get("url", "")
    if url:
        cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if cached.is_file():
            return str(cached), str(cached), ""
    if hub:
        repo = hub.rstrip("/") if hub.endswith("/") else os.path.dirname(hub)
        filename = "" if hub.endswith("/") else os.path.basename(hub)
        rev = f" --revision {spec.revision}" if spec.revision else ""
        how = f"hf download {repo} {filename or _HF_WEIGHT_NAMES[1]}{rev}" + (
            f" (or save {url} into ~/.cache/clip/, or give the file's path as the weights)" if url else "")
        return None, f"HF cache: {repo}", how
    return None, url, url


def availability(spec: ModelSpec) -> Availability:
    try:
        path, location, how = _resolve(spec)
    except UserError as exc:
        return Availability(False, spec.source, None, str(exc))
    if path is None:
        return Availability(False, location, None, how)
    p = Path(path)
    size = sum(f.stat().st_size for f in p.iterdir() if f.is_file()) if p.is_dir() else p.stat().st_size
    return Availability(True, path, size, "")


def load(spec: ModelSpec, runtime: Runtime) -> OpenClip:
    import open_clip

    path, location, how = _resolve(spec)
    precision = _precision(runtime)
    device = runtime.torch_device
    mean, std = OPENAI_MEAN, OPENAI_STD
    if path is not None and Path(path).is_dir():
        model = open_clip.create_model(f"local-dir:{path}", precision=precision, device=device)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
        pp = json.loads((Path(path) / _CONFIG_NAME).read_text()).get("preprocess_cfg", {})
        mean, std = pp.get("mean", mean), pp.get("std", std)
        name = spec.variant or Path(path).name
    else:
        if not spec.variant:
            raise UserError(f"open-clip spec {spec.source!r}: `variant` must name the architecture "
                            f"(an open_clip model name, e.g. ViT-B-16-plus-240)")
        if spec.variant not in open_clip.list_models():
            raise UserError(f"open-clip: unknown variant {spec.variant!r}; see open_clip.list_models()")
        if path is None:
            if _is_local(spec.source):
                raise MissingWeightsError(f"open-clip checkpoint {location} does not exist")
            if offline():
                raise MissingWeightsError(f"open-clip {spec.variant} {spec.source}: not in the local cache "
                                          f"({location}) and HF_HUB_OFFLINE is set. Get it with: {how}")
            path = spec.source  # let open_clip download the tag / hub repo
        if not _is_local(spec.source) and not spec.source.startswith("hf-hub:"):
            tag = _tag_cfg(spec)
            mean, std = tag.get("mean", mean), tag.get("std", std)
        model = open_clip.create_model(spec.variant, pretrained=path, precision=precision, device=device)
        tokenizer = open_clip.get_tokenizer(spec.variant)
        name = spec.variant
    return OpenClip(model, tokenizer, mean=mean, std=std, name=name, source=spec.source, device=device,
                    weights_are_real=True)


def _precision(runtime: Runtime) -> str:
    if runtime.dtype not in _PRECISION:
        raise UserError(f"open-clip: unsupported dtype {runtime.dtype!r}; valid: {', '.join(_PRECISION)}")
    return _PRECISION[runtime.dtype]


# --- tiny-random profile ---------------------------------------------------------------------------
def tiny_model_config(variant: str = "ViT-B-16-plus-240") -> dict:
    """The variant's open_clip config shrunk to a few thousand-wide model: same image size, patch size,
    depth of the image tower (so layer numbers like SDP's 3/6/9/12 stay valid) and tokenizer."""
    import open_clip

    cfg = open_clip.get_model_config(variant)
    if cfg is None:
        raise UserError(f"open-clip: unknown variant {variant!r}; see open_clip.list_models()")
    cfg = deepcopy(cfg)
    cfg["embed_dim"] = 32
    cfg["vision_cfg"].update(width=64, head_width=32, mlp_ratio=2.0)
    cfg["text_cfg"].update(width=32, heads=2, layers=2, mlp_ratio=2.0)
    return cfg


def build_tiny(variant: str = "ViT-B-16-plus-240", seed: int = 0):
    """A random-weight open_clip CLIP of the tiny config, deterministic in `seed`."""
    import torch
    from open_clip.model import CLIP

    cfg = tiny_model_config(variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**deepcopy(cfg))
    return model.eval(), cfg


def save_open_clip_dir(model, model_cfg: dict, folder: str | Path, mean=OPENAI_MEAN, std=OPENAI_STD) -> Path:
    """Write a model in open_clip's hub layout (config + weights), loadable as a spec source."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": list(mean), "std": list(std)}}
    (folder / _CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    torch.save(model.state_dict(), folder / _HF_WEIGHT_NAMES[1])
    return folder


def tiny_random(spec: ModelSpec, runtime: Runtime) -> OpenClip:
    import open_clip
    import torch

    _precision(runtime)  # validates the dtype name
    variant = spec.variant or "ViT-B-16-plus-240"
    model, _ = build_tiny(variant)
    model = model.to(runtime.torch_device, getattr(torch, runtime.dtype))
    return OpenClip(model, open_clip.get_tokenizer(variant), mean=OPENAI_MEAN, std=OPENAI_STD,
                    name=f"tiny-random {variant}", source=spec.source, device=runtime.torch_device,
                    weights_are_real=False)


register_family(FAMILY, Family(load=load, availability=availability, tiny_random=tiny_random))
