"""CLIPSeg family ("clipseg"): transformers' CLIPSegForImageSegmentation with its own processor.

Default: CIDAS/clipseg-rd64-refined pinned at commit 8bef68afb9ebcbb7b153eee19f49aedb58e3f083. The repo's
first processor upload (91cddba, Nov 2022) carried CLIP's normalisation constants; commit 583b388
(Jan 2023, "Update preprocessor_config.json") switched to the ImageNet constants (0.485, 0.456, 0.406) /
(0.229, 0.224, 0.225), ViTImageProcessor, bilinear resize to 352x352, which is what the original CLIPSeg
code trains and evaluates with. The pinned commit is later than 583b388; the weights file is unchanged
since Nov 2022. Loading a CIDAS checkpoint whose processor has other constants is refused.

Spec sources: a hub id (with `revision`), or a local folder written by save_pretrained (model + processor).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import MissingWeightsError, UserError
from .base import Availability, Family, ModelSpec, Runtime, offline, register_family

FAMILY = "clipseg"
CLIPSEG_RD64_REFINED = ModelSpec(FAMILY, "CIDAS/clipseg-rd64-refined",
                                 revision="8bef68afb9ebcbb7b153eee19f49aedb58e3f083",
                                 role="text-prompted segmentation")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# each group: one of these files must be present (transformers 5's save_pretrained writes processor_config.json
# and tokenizer.json; the hub repos have preprocessor_config.json, vocab.json and merges.txt)
_NEEDED = (("config.json",), ("preprocessor_config.json", "processor_config.json"),
           ("tokenizer.json", "vocab.json"))
_TORCH_DTYPES = ("float32", "float16", "bfloat16")


class ClipSeg:
    """CLIPSeg model + processor. `segment(images, prompts)` -> (N, P, h, w) float32 logits at the model's
    input size (352 x 352 for the CIDAS checkpoints); sigmoid gives per-pixel probabilities."""

    def __init__(self, model, processor, *, source: str, device: str, weights_are_real: bool):
        import torch

        self.model = model.eval()
        self.processor = processor
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.source = source
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype
        self.weights_are_real = weights_are_real
        self.image_mean = tuple(float(v) for v in self.image_processor.image_mean)
        self.image_std = tuple(float(v) for v in self.image_processor.image_std)
        size = self.image_processor.size
        self.input_size = (int(size["height"]), int(size["width"])) if isinstance(size, dict) and "height" in size \
            else (int(model.config.vision_config.image_size),) * 2

    def pixel_values(self, images: Sequence[np.ndarray]):
        """The checkpoint's own preprocessing (resize to the input size, rescale, normalise)."""
        arrays = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise UserError(f"image {i}: expected an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
            arrays.append(img if img.flags.writeable else img.copy())  # torch warns on read-only arrays
        out = self.image_processor(images=arrays, return_tensors="pt", input_data_format="channels_last")
        return out["pixel_values"].to(self.device, self.dtype)

    def encode_prompts(self, prompts: Sequence[str]):
        """(P, projection_dim) conditional embeddings of the text prompts."""
        import torch

        if isinstance(prompts, str) or not prompts:
            raise UserError(f"clipseg: prompts must be a non-empty list of strings, got {prompts!r}")
        tok = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
        with torch.no_grad():
            out = self.model.clip.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                    attention_mask=tok["attention_mask"].to(self.device))
        return getattr(out, "pooler_output", out)

    def activations(self, pixel_values):
        """Vision hidden states at config.extract_layers (what the decoder reads), computed once per image."""
        import torch

        with torch.no_grad():
            out = self.model.clip.get_image_features(pixel_values=pixel_values, output_hidden_states=True)
        return [out.hidden_states[i + 1] for i in self.model.config.extract_layers]

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[str], batch_size: int = 4) -> np.ndarray:
        """(N, P, h, w) float32 logits; the image encoder runs once per image, the decoder once per prompt.

        Equivalent to CLIPSegForImageSegmentation.forward on every (image, prompt) pair (checked in tests).
        """
        import torch

        cond = self.encode_prompts(prompts)
        n_p = cond.shape[0]
        out = []
        for start in range(0, len(images), batch_size):
            pix = self.pixel_values(images[start:start + batch_size])
            acts = [a.repeat_interleave(n_p, dim=0) for a in self.activations(pix)]
            with torch.no_grad():
                logits = self.model.decoder(acts, cond.repeat(pix.shape[0], 1)).logits
            logits = logits.reshape(pix.shape[0], n_p, *logits.shape[-2:])
            out.append(logits.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


# --- where a spec loads from ------------------------------------------------------------------------
def _is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(source))


def _how_to_get(spec: ModelSpec) -> str:
    rev = f" --revision {spec.revision}" if spec.revision else ""
    return f"hf download {spec.source}{rev}"


def availability(spec: ModelSpec) -> Availability:
    if _is_local(spec.source):
        path = Path(os.path.expanduser(spec.source))
        groups = (*_NEEDED, _WEIGHTS)
        missing = [" or ".join(g) for g in groups if not any((path / n).is_file() for n in g)]
        if not path.is_dir() or missing:
            return Availability(False, str(path), None, f"a save_pretrained folder (model and processor) at {path};"
                                                        f" missing: {'; '.join(missing) or 'the folder'}")
        return Availability(True, str(path), sum(f.stat().st_size for f in path.iterdir() if f.is_file()))
    from huggingface_hub import try_to_load_from_cache

    found = {}
    groups = (*_NEEDED, _WEIGHTS)
    for name in (n for g in groups for n in g):
        p = try_to_load_from_cache(spec.source, name, revision=spec.revision)
        if isinstance(p, str) and os.path.isfile(p):
            found[name] = p
    present = all(any(n in found for n in g) for g in groups)
    if not present:
        return Availability(False, f"HF cache: {spec.source}", None, _how_to_get(spec))
    weights = next(found[w] for w in _WEIGHTS if w in found)
    return Availability(True, str(Path(weights).parent), os.path.getsize(weights))


def _check_normalisation(spec: ModelSpec, processor) -> None:
    mean = tuple(round(float(v), 4) for v in processor.image_processor.image_mean)
    std = tuple(round(float(v), 4) for v in processor.image_processor.image_std)
    if spec.source.startswith("CIDAS/") and (mean != IMAGENET_MEAN or std != IMAGENET_STD):
        raise UserError(f"clipseg {spec.source} at revision {spec.revision or 'main'}: its processor normalises "
                        f"with mean {mean} / std {std}, not the ImageNet constants CLIPSeg was trained with; "
                        f"use revision {CLIPSEG_RD64_REFINED.revision} (after the Jan 2023 processor fix)")


def load(spec: ModelSpec, runtime: Runtime) -> ClipSeg:
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    if runtime.dtype not in _TORCH_DTYPES:
        raise UserError(f"clipseg: unsupported dtype {runtime.dtype!r}; valid: {', '.join(_TORCH_DTYPES)}")
    av = availability(spec)
    if not av.present and (_is_local(spec.source) or offline()):
        raise MissingWeightsError(f"clipseg {spec.describe()}: not found at {av.location}. Get it with: "
                                  f"{av.how_to_get}")
    kwargs = {} if _is_local(spec.source) else {"revision": spec.revision}
    source = os.path.expanduser(spec.source)
    processor = CLIPSegProcessor.from_pretrained(source, **kwargs)
    _check_normalisation(spec, processor)
    model = CLIPSegForImageSegmentation.from_pretrained(source, dtype=getattr(torch, runtime.dtype), **kwargs)
    model = model.to(runtime.torch_device)
    return ClipSeg(model, processor, source=spec.source, device=runtime.torch_device, weights_are_real=True)


# --- tiny-random profile ---------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode map (the alphabet of byte-level BPE vocabularies)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def tiny_tokenizer():
    """A CLIPTokenizer with a character-level vocabulary (every byte, alone and word-final; no merges)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    for ch in _bytes_to_unicode().values():
        vocab[ch + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_config(vocab_size: int, bos: int, eos: int):
    """CLIPSeg-rd64-refined's architecture, shrunk: 352 px input, patch 16, complex transposed convolution,
    three extract layers (0-based, below num_hidden_layers)."""
    from transformers import CLIPSegConfig

    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                pad_token_id=eos)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=4, num_attention_heads=2,
                  image_size=352, patch_size=16)
    return CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=32, extract_layers=[1, 2, 3],
                         reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                         use_complex_transposed_convolution=True)


def build_tiny(seed: int = 0):
    """(model, processor): a random-weight tiny CLIPSeg and a processor with the refined checkpoint's settings."""
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    tokenizer = tiny_tokenizer()
    config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(config).eval()
    image_processor = ViTImageProcessor(do_resize=True, size={"height": 352, "width": 352}, resample=2,
                                        do_rescale=True, do_normalize=True, image_mean=list(IMAGENET_MEAN),
                                        image_std=list(IMAGENET_STD))
    return model, CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_random(spec: ModelSpec, runtime: Runtime) -> ClipSeg:
    import torch

    if runtime.dtype not in _TORCH_DTYPES:
        raise UserError(f"clipseg: unsupported dtype {runtime.dtype!r}; valid: {', '.join(_TORCH_DTYPES)}")
    model, processor = build_tiny()
    model = model.to(runtime.torch_device, getattr(torch, runtime.dtype))
    return ClipSeg(model, processor, source=spec.source, device=runtime.torch_device, weights_are_real=False)


register_family(FAMILY, Family(load=load, availability=availability, tiny_random=tiny_random))
