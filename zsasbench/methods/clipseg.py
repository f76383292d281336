"""CLIPSeg as a zero-shot anomaly segmenter (Lüddecke & Ecker, "Image Segmentation Using Text and Image
Prompts", CVPR 2022), as the IAP-AS paper compares it: fixed text prompts ("abnormal", "defect"), no
category-specific prompt, the CIDAS/clipseg-rd64-refined checkpoint through transformers.

Map = sigmoid(logits) per prompt at the model's 352 x 352 input (the checkpoint's own processor: bilinear
resize, ImageNet normalisation), combined over prompts (max by default, or mean), resized bilinearly to
the image's own size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..models import ModelSpec, load
from ..models.clipseg import CLIPSEG_RD64_REFINED, FAMILY as CLIPSEG_FAMILY
from .base import Method, MethodConfig, PrepareContext

COMBINE = ("max", "mean")


@dataclass
class CLIPSegConfig(MethodConfig):
    prompts: list[str] = field(default_factory=lambda: ["abnormal", "defect"])
    combine: str = "max"  # how per-prompt probability maps are combined: max or mean
    weights: str = CLIPSEG_RD64_REFINED.source  # hub id or save_pretrained folder
    revision: str = CLIPSEG_RD64_REFINED.revision or ""  # hub revision (ignored for a local folder)


def combine_maps(probs: np.ndarray, how: str) -> np.ndarray:
    """(P, h, w) per-prompt probabilities -> (h, w)."""
    if how == "max":
        return probs.max(axis=0)
    if how == "mean":
        return probs.mean(axis=0)
    raise UserError(f"clipseg: combine must be one of {', '.join(COMBINE)}, got {how!r}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    # written with exp of a non-positive number only, so large logits do not overflow
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


class CLIPSeg(Method):
    name = "clipseg"
    display_name = "CLIPSeg"
    Config = CLIPSegConfig
    description = "CLIPSeg (rd64-refined) with fixed prompts 'abnormal' / 'defect'; sigmoid maps combined by max."
    reference = "Lüddecke & Ecker, CVPR 2022; transformers CLIPSegForImageSegmentation, CIDAS/clipseg-rd64-refined"

    batch_size = 4  # images per forward pass (memory only)

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        cfg = self.config
        if cfg.combine not in COMBINE:
            raise UserError(f"clipseg: combine must be one of {', '.join(COMBINE)}, got {cfg.combine!r}")
        if isinstance(cfg.prompts, str) or not cfg.prompts or not all(isinstance(p, str) and p.strip()
                                                                      for p in cfg.prompts):
            raise UserError(f"clipseg: prompts must be a non-empty list of non-empty strings, got {cfg.prompts!r}")
        self.model = None

    def spec(self) -> ModelSpec:
        return ModelSpec(CLIPSEG_FAMILY, self.config.weights, revision=self.config.revision or None,
                         role=CLIPSEG_RD64_REFINED.role)

    def required_models(self) -> list[ModelSpec]:
        return [self.spec()]

    def prepare(self, context: PrepareContext) -> None:
        if self.model is None:
            self.model = load(self.spec(), self.runtime)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        if self.model is None:
            self.model = load(self.spec(), self.runtime)
        logits = self.model.segment(list(images), list(self.config.prompts), batch_size=self.batch_size)
        maps = []
        for img, lg in zip(images, logits):
            m = combine_maps(sigmoid(lg), self.config.combine)
            t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
            t = F.interpolate(t, size=tuple(np.asarray(img).shape[:2]), mode="bilinear", align_corners=False)
            maps.append(t[0, 0].numpy().astype(np.float32))
        return maps

    def artifacts(self) -> dict:
        return {"prompts": list(self.config.prompts), "combine": self.config.combine}
