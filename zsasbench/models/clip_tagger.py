"""CLIP zero-shot tagger (family "clip-tagger"): an alternative to RAM for naming what an image shows.

Each image is scored against "a photo of a {tag}." for every tag of a vocabulary (CLIP zero-shot
classification: cosine similarity times the model's logit scale, softmax over the vocabulary); the
top-k tags whose probability reaches the threshold are returned, at least `min_tags` of them, ordered
by probability (descending) then name, so the output is deterministic.

Spec: ModelSpec("clip-tagger", <open_clip source: pretrained tag, checkpoint file or open_clip folder>,
variant=<open_clip architecture>, filename=<optional vocabulary file, one tag per line>).
Image preprocessing is open_clip's own evaluation transform (resize the shorter side, centre crop).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .base import Availability, Family, ModelSpec, Runtime, register_family
from . import open_clip as oc

FAMILY = "clip-tagger"
CLIP_TAGGER = ModelSpec(FAMILY, oc.CLIP_B16_PLUS_240.source, variant=oc.CLIP_B16_PLUS_240.variant,
                        role="zero-shot image tagger")
TEMPLATE = "a photo of a {}."

# Objects and materials of industrial inspection images (the benchmark's categories and their kin).
DEFAULT_VOCABULARY: tuple[str, ...] = (
    "bearing", "bolt", "bottle", "bracket", "cable", "capsule", "carpet", "casting", "chip", "circuit board",
    "coin", "commutator", "connector", "fabric", "gear", "glass", "grid", "hazelnut", "leather", "lens",
    "magnetic tile", "metal nut", "metal plate", "metal surface", "nail", "nut", "pcb", "pill", "pipe",
    "plastic part", "rail", "rubber", "screw", "sheet metal", "spring", "steel", "stone", "surface", "textile",
    "tile", "toothbrush", "transistor", "tube", "valve", "wafer", "washer", "weld", "wire", "wood", "zipper",
)


def read_vocabulary(path: str | Path) -> list[str]:
    """One tag per line; blank lines and lines starting with # are skipped; duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"clip-tagger vocabulary file {path} does not exist")
    tags = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    tags = [t for t in tags if t and not t.startswith("#")]
    return check_vocabulary(tags, str(path))


def check_vocabulary(tags: Sequence[str], where: str = "vocabulary") -> list[str]:
    tags = [str(t).strip() for t in tags]
    if not tags or any(not t for t in tags):
        raise UserError(f"clip-tagger {where}: needs at least one tag and no empty tags")
    seen, dups = set(), []
    for t in tags:
        if t in seen:
            dups.append(t)
        seen.add(t)
    if dups:
        raise UserError(f"clip-tagger {where}: duplicate tags {sorted(set(dups))}")
    return tags


class Tagger:
    """Zero-shot CLIP tagger over a fixed vocabulary."""

    def __init__(self, clip: oc.OpenClip, vocabulary: Sequence[str] = DEFAULT_VOCABULARY, top_k: int = 3,
                 threshold: float = 0.1, min_tags: int = 1, template: str = TEMPLATE):
        import torch

        if top_k < 1 or not 0 <= min_tags <= top_k:
            raise UserError(f"clip-tagger: need top_k >= 1 and 0 <= min_tags <= top_k (got {top_k}, {min_tags})")
        if "{}" not in template:
            raise UserError(f"clip-tagger: template {template!r} has no {{}} for the tag")
        self.clip = clip
        self.vocabulary = check_vocabulary(vocabulary)
        self.top_k, self.threshold, self.min_tags, self.template = top_k, float(threshold), min_tags, template
        self.text_features = clip.encode_text([template.format(t) for t in self.vocabulary], normalize=True)
        scale = getattr(clip.model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else 100.0
        self._transform = None

    def _pixels(self, images: Sequence[np.ndarray]):
        import torch
        from open_clip import image_transform
        from PIL import Image

        if self._transform is None:
            self._transform = image_transform(self.clip.image_size, is_train=False, mean=self.clip.mean,
                                              std=self.clip.std)
        batch = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise UserError(f"image {i}: expected an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
            batch.append(self._transform(Image.fromarray(img)))
        return torch.stack(batch).to(self.clip.device, self.clip.dtype)

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, V) softmax probabilities over the vocabulary."""
        import torch

        with torch.no_grad():
            feats = self.clip.encode_image(self._pixels(images), normalize=True)
            logits = self.logit_scale * feats @ self.text_features.T
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def tag(self, images: Sequence[np.ndarray], top_k: int | None = None,
            threshold: float | None = None) -> list[list[str]]:
        top_k = self.top_k if top_k is None else top_k
        threshold = self.threshold if threshold is None else threshold
        if not images:
            return []
        out = []
        for probs in self.probabilities(images):
            order = sorted(range(len(self.vocabulary)), key=lambda j: (-float(probs[j]), self.vocabulary[j]))
            chosen = [j for j in order[:top_k] if probs[j] >= threshold]
            if len(chosen) < self.min_tags:
                chosen = order[:self.min_tags]
            out.append([self.vocabulary[j] for j in chosen])
        return out


def _clip_spec(spec: ModelSpec) -> ModelSpec:
    return ModelSpec(oc.FAMILY, spec.source, revision=spec.revision, variant=spec.variant,
                     role=oc.CLIP_B16_PLUS_240.role)


def _vocabulary(spec: ModelSpec) -> list[str]:
    return read_vocabulary(os.path.expanduser(spec.filename)) if spec.filename else list(DEFAULT_VOCABULARY)


def availability(spec: ModelSpec) -> Availability:
    if spec.filename and not Path(os.path.expanduser(spec.filename)).is_file():
        return Availability(False, spec.filename, None, f"write the vocabulary file {spec.filename} (one tag a line)")
    return oc.availability(_clip_spec(spec))


def load(spec: ModelSpec, runtime: Runtime) -> Tagger:
    from .base import load as load_model

    vocabulary = _vocabulary(spec)
    return Tagger(load_model(_clip_spec(spec), runtime), vocabulary)


def tiny_random(spec: ModelSpec, runtime: Runtime) -> Tagger:
    from .base import load as load_model

    return Tagger(load_model(_clip_spec(spec), runtime), _vocabulary(spec))


register_family(FAMILY, Family(load=load, availability=availability, tiny_random=tiny_random))
