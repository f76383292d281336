"""SAA+ (Cao et al., "Segment Any Anomaly without Training via Hybrid Prompt Regularization", 2023).

Grounding DINO proposes boxes for text prompts (three general defect prompts plus per-category manual
ones), SAM turns each surviving box into a mask, and hybrid prompts regularise the result: property
prompts bound the object count, the defect area relative to the largest object box and the number of
masks kept; saliency from ImageNet WideResNet-50 feature self-similarity rescales the confidences.
Everything after the two detectors is `saa_regularisation.hybrid_regularisation` (checked against the
reference's own outputs by the `saa` parity fixture); the prompt tables are in `saa_plus_prompts`.

Reference: caoyunkang/Segment-Any-Anomaly, branch SAA-plus @ 23acbd9. Deviations (see
docs/methods-saa-plus.md): the image is RGB for all three models (the reference feeds BGR to SAM and to
the saliency backbone; `reference_bgr=true` reproduces that); the map is returned at the image's own size
(the reference resizes it to a square `out_size`, which the harness's protocol does instead); no crash
when the object pass keeps nothing; boxes come from the shared Grounding DINO wrapper, which clips them
to the image and orders them by score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from ..models import ModelSpec, load
from ..models.grounding_dino import GROUNDING_DINO_TINY
from ..models.sam import SAM_VIT_H
from ..models.timm_backbone import WIDE_RESNET50
from .base import Method, MethodConfig, PrepareContext
from .saa_plus_prompts import CategoryPrompts, PropertyPrompt, category_prompts, property_sentence
from .saa_regularisation import CaptionDetections, hybrid_regularisation, normalise_caption


@dataclass
class SAAPlusConfig(MethodConfig):
    box_threshold: float = 0.1  # Grounding DINO box score threshold (reference eval default)
    text_threshold: float = 0.1  # token score threshold for the decoded phrase (filter-word test)
    object_number: int = 0  # property-prompt overrides; 0 = the category's table value
    k_mask: int = 0
    area_ratio: float = 0.0
    saliency_top_n: int = 400  # single instance: mean of this many largest dissimilarities per position
    rescore_gain: float = 3.0  # s' = s * exp(gain * mean saliency in the mask)
    single_instance_size: int = 256  # saliency input size (square) for one object per image
    multi_instance_size: int = 1024  # saliency input size (square) for several objects per image
    reference_bgr: bool = False  # feed BGR to SAM and the saliency backbone, as the reference code does
    detector: str = GROUNDING_DINO_TINY.source  # hub id or local folder
    detector_revision: str = GROUNDING_DINO_TINY.revision or ""
    segmenter: str = SAM_VIT_H.source  # hub id, local folder, or segment-anything .pth checkpoint
    segmenter_revision: str = SAM_VIT_H.revision or ""
    segmenter_variant: str = ""  # e.g. "vit_h" for a segment-anything checkpoint file
    backbone: str = WIDE_RESNET50.source  # timm name (ImageNet weights) or checkpoint file
    backbone_variant: str = WIDE_RESNET50.variant or ""


class SAAPlus(Method):
    name = "saa-plus"
    display_name = "SAA+"
    Config = SAAPlusConfig
    description = ("Grounding DINO + SAM with general and per-category prompts, property filters, "
                   "WideResNet-50 saliency rescoring and top-k mask fusion.")
    reference = ("Cao et al., arXiv 2305.10724; caoyunkang/Segment-Any-Anomaly branch SAA-plus @ "
                 "23acbd9072086ac510ea9028fe7fe1af02bb2b39")

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        cfg = self.config
        for key in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(cfg, key) < 1.0:
                raise UserError(f"saa-plus: {key} must be in [0, 1), got {getattr(cfg, key)}")
        for key in ("saliency_top_n", "single_instance_size", "multi_instance_size"):
            if getattr(cfg, key) < 1:
                raise UserError(f"saa-plus: {key} must be a positive integer, got {getattr(cfg, key)}")
        for key in ("object_number", "k_mask"):
            if getattr(cfg, key) < 0:
                raise UserError(f"saa-plus: {key} must be >= 1 (or 0 for the table value), got {getattr(cfg, key)}")
        if cfg.area_ratio < 0:
            raise UserError(f"saa-plus: area_ratio must be > 0 (or 0 for the table value), got {cfg.area_ratio}")
        self.prompts: CategoryPrompts | None = None
        self._models: tuple[Any, Any, Any] | None = None
        self._counts: dict[str, float] = {}

    # --- models ---------------------------------------------------------------------------
    def specs(self) -> list[ModelSpec]:
        cfg = self.config
        return [
            ModelSpec("grounding-dino", cfg.detector, revision=cfg.detector_revision or None,
                      role=GROUNDING_DINO_TINY.role),
            ModelSpec("sam", cfg.segmenter, revision=cfg.segmenter_revision or None,
                      variant=cfg.segmenter_variant or None, role=SAM_VIT_H.role),
            # own role string: the runner logs roles as MLflow param names, which allow no parentheses
            ModelSpec("timm", cfg.backbone, variant=cfg.backbone_variant or None, role="saliency backbone"),
        ]

    def required_models(self) -> list[ModelSpec]:
        return self.specs()

    def _load(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            self._models = tuple(load(spec, self.runtime) for spec in self.specs())
        return self._models

    # --- contract -------------------------------------------------------------------------
    def prepare(self, context: PrepareContext) -> None:
        prompts = category_prompts(context.dataset, context.category, context.kind, context.object_name)
        cfg = self.config
        prop = prompts.prop
        if cfg.object_number or cfg.k_mask or cfg.area_ratio:
            prop = PropertyPrompt(object_word=prop.object_word, similar=prop.similar,
                                  object_number=cfg.object_number or prop.object_number,
                                  k_mask=cfg.k_mask or prop.k_mask, area_ratio=cfg.area_ratio or prop.area_ratio)
        self.prompts = CategoryPrompts(prompts.class_name, prompts.textual, prop, prompts.source)
        self._counts = {"images": 0, "no_object_box": 0, "no_defect_box": 0, "multi_instance_fallback": 0}
        self._load()

    def _detect(self, detector, image: np.ndarray, prompt: str, filter_word: str | None) -> CaptionDetections:
        cfg = self.config
        det = detector.detect(image, normalise_caption(prompt), cfg.box_threshold, cfg.text_threshold)
        h, w = image.shape[:2]
        b = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
        # the reference filters on normalised cx, cy, w, h: recover them from the wrapper's pixel boxes
        cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                           (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], axis=1)
        scores = np.asarray(det.token_logits, dtype=np.float32).reshape(len(b), len(det.tokens))
        return CaptionDetections(cxcywh.astype(np.float32), scores, list(det.tokens), filter_word)

    def score_image(self, image: np.ndarray):
        """The full SAA+ result for one RGB image (every intermediate, see `StageResult`)."""
        if self.prompts is None:
            raise UserError("saa-plus: prepare(context) must be called before predict")
        image = np.ascontiguousarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"saa-plus: images must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        detector, segmenter, backbone = self._load()
        cfg, p = self.config, self.prompts
        obj = [self._detect(detector, image, p.prop.object_word, None)]
        dfx = [self._detect(detector, image, caption, word) for caption, word in p.textual]
        other = np.ascontiguousarray(image[..., ::-1]) if cfg.reference_bgr else image

        def segment(boxes: np.ndarray) -> np.ndarray:
            return segmenter.segment_boxes(other, boxes).masks

        return hybrid_regularisation(image, obj, dfx, segment, p.prop.object_number, p.prop.k_mask,
                                     p.prop.area_ratio, backbone, cfg.box_threshold, cfg.text_threshold,
                                     out_size=None, saliency_image=other, single_size=cfg.single_instance_size,
                                     multi_size=cfg.multi_instance_size, top_n=cfg.saliency_top_n,
                                     gain=cfg.rescore_gain)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        maps = []
        for image in images:
            r = self.score_image(image)
            self._counts["images"] += 1
            self._counts["no_object_box"] += int(r.object_pass.max_box_area is None)
            self._counts["no_defect_box"] += int(len(r.defect_pass.scores) == 0)
            self._counts["multi_instance_fallback"] += r.fallbacks.get("multi_instance_to_single", 0)
            maps.append(r.result.map_native.astype(np.float32))
        return maps

    def artifacts(self) -> dict[str, Any]:
        if self.prompts is None:
            return {}
        p = self.prompts
        return {"source": p.source, "class_name": p.class_name,
                "textual_prompts": [list(t) for t in p.textual],
                "object_word": p.prop.object_word, "object_number": p.prop.object_number,
                "k_mask": p.prop.k_mask, "area_ratio": p.prop.area_ratio,
                "property_prompt": property_sentence(p.class_name.replace(" ", "_"), p.prop)}

    def counters(self) -> dict[str, float]:
        return dict(self._counts)
