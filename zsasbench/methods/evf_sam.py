"""`evf-sam`: EVF-SAM (Zhang et al., 2024) as a zero-shot anomaly segmenter with fixed text prompts.

EVF-SAM segments what a text prompt names: BEiT-3 fuses the image and the prompt early, its CLS feature
becomes SAM's only prompt, and SAM's mask decoder returns one mask (see zsasbench/models/evf_sam.py).
For anomaly segmentation it gets the same fixed, class-agnostic prompts IAP-AS uses before its
image-aware ones, `abnormal` and `defect` (a config field). Anomaly map per image: the sigmoid of the
final mask logits at the image size, one map per prompt, combined by the pixel-wise maximum (`combine`).
There is no per-category stage: `prepare` only loads the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import expit

from ..errors import UserError
from ..models import ModelSpec, load
from ..models.evf_sam import EVF_SAM
from .base import Method, MethodConfig, PrepareContext

COMBINE = ("max", "mean")


@dataclass
class EVFSAMConfig(MethodConfig):
    prompts: tuple[str, ...] = ("abnormal", "defect")  # IAP-AS's fixed prompts
    combine: str = "max"  # how per-prompt maps merge: "max" or "mean"
    model: str = EVF_SAM.source  # hub id, local folder or checkpoint file
    model_revision: str = EVF_SAM.revision or ""


class EVFSAM(Method):
    name = "evf-sam"
    display_name = "EVF-SAM"
    Config = EVFSAMConfig
    description = "Text-prompted SAM with early BEiT-3 vision-language fusion; fixed prompts, sigmoid mask logits."
    reference = "Zhang et al., EVF-SAM (arXiv 2406.20076); code github.com/hustvl/EVF-SAM @ 9935dc5"

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        cfg = self.config
        prompts = tuple(cfg.prompts)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise UserError(f"evf-sam: prompts must be a non-empty list of non-empty strings, got {cfg.prompts!r}")
        if cfg.combine not in COMBINE:
            raise UserError(f"evf-sam: combine {cfg.combine!r} is not one of {', '.join(COMBINE)}")
        self._model = None

    def spec(self) -> ModelSpec:
        cfg = self.config
        return ModelSpec("evf-sam", cfg.model, revision=cfg.model_revision or None, role=EVF_SAM.role)

    def required_models(self) -> list[ModelSpec]:
        return [self.spec()]

    def _load(self):
        if self._model is None:
            self._model = load(self.spec(), self.runtime)
        return self._model

    def prepare(self, context: PrepareContext) -> None:
        self._load()

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        model = self._load()
        logits = model.segment(image, list(self.config.prompts)).logits  # (P, H, W)
        probs = expit(logits.astype(np.float64))
        combined = probs.max(axis=0) if self.config.combine == "max" else probs.mean(axis=0)
        return combined.astype(np.float32)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.anomaly_map(image) for image in images]
