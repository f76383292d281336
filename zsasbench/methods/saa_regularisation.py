"""SAA+ hybrid prompt regularisation: everything after the detector and the segmenter.

Port of the reference (caoyunkang/Segment-Any-Anomaly, branch SAA-plus @ 23acbd9, `SAA/model.py`,
`SAA/modelinet.py`), written from its behaviour as specified in the parity fixture
`shared/fixtures/saa/README.md`. Steps:

1. `select_boxes`: per caption, keep boxes whose best token score > box threshold and whose normalised
   area is in (min_area, max_area); drop a box when the filter word occurs (substring) in its decoded
   phrase (tokens scoring > text threshold).
2. `run_pass`: concatenate the survivors of a pass's captions in prompt order; the object pass gives the
   largest kept box area, which times the area ratio bounds the defect boxes.
3. `saliency_map`: ImageNet WideResNet-50 feature self-similarity (single instance: mean of the 400
   largest cosine dissimilarities per position; multi instance: dissimilarity to the nearest feature of
   the other objects).
4. `regularise` (the plain function): rescore each defect mask by exp(3 * mean saliency in the mask),
   keep the k_mask best, map = sum(mask * score) / (1 + sum(mask)).

Numerics follow the reference: float32 boxes, areas and comparisons (a Python threshold meets a float32
tensor as float32), float64 scores, OpenCV INTER_LINEAR resizes (its uint8 fixed-point arithmetic is
needed for parity, so OpenCV is used, not a look-alike).

Where the reference crashes, this port goes on (documented in docs/methods-saa-plus.md):
- no object box kept with n == 1: the object masks are unused there, so nothing is needed;
- multi-instance (n > 1) with fewer than two object masks left on the feature grid: cross-object
  similarity is undefined, so the single-instance saliency is used instead (counted in `fallbacks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]")


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UserError("SAA+ needs OpenCV for the reference's resizes: pip install opencv-python-headless") from exc
    return cv2


# ------------------------------------------------------------------------------------------------
# 1-2. Box selection per caption and per pass
# ------------------------------------------------------------------------------------------------
def normalise_caption(prompt: str) -> str:
    """Caption as the reference sends it to Grounding DINO: lower case, stripped, ending with '.'."""
    caption = prompt.lower().strip()
    return caption if caption.endswith(".") else caption + "."


@dataclass
class CaptionDetections:
    """One caption's detector output in the reference's form (all candidate boxes, no filtering)."""

    boxes_cxcywh: np.ndarray  # (N, 4) float32, normalised centre x, centre y, width, height
    token_scores: np.ndarray  # (N, T) float32, sigmoid score per caption token position
    tokens: Sequence[str]  # caption tokens by position (BERT word pieces; [CLS]/[SEP] included if scored)
    filter_word: str | None  # drop a box whose decoded phrase contains this (substring test); None: never

    def __post_init__(self):
        self.boxes_cxcywh = np.asarray(self.boxes_cxcywh, dtype=np.float32).reshape(-1, 4)
        self.token_scores = np.asarray(self.token_scores, dtype=np.float32)
        if self.token_scores.ndim != 2 or self.token_scores.shape[0] != len(self.boxes_cxcywh):
            raise ValueError(f"token_scores must be (N, T) with N = {len(self.boxes_cxcywh)} boxes, "
                             f"got {self.token_scores.shape}")


def decode_phrase(tokens: Sequence[str], on: np.ndarray) -> str:
    """Decode the tokens at the `on` positions the way BERT's tokenizer.decode does.

    Word pieces (`##x`) join the previous token; spaces before punctuation are removed (BERT's
    clean-up). Like the reference at this commit, special tokens are not excluded.
    """
    idx = np.flatnonzero(on)
    if len(idx) and idx[-1] >= len(tokens):
        raise ValueError(f"a token score above the text threshold at position {idx[-1]}, "
                         f"but the caption has only {len(tokens)} tokens")
    text = " ".join(tokens[i] for i in idx).replace(" ##", "")
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text.strip()


@dataclass
class BoxSelection:
    kept: np.ndarray  # (K,) int64 candidate indices, in candidate order
    scores: np.ndarray  # (K,) float64 best token score of each kept box
    phrases: list[str]  # decoded phrase of every candidate (text threshold applied)


def select_boxes(det: CaptionDetections, box_threshold: float, text_threshold: float,
                 max_area: float, min_area: float = 0.0) -> BoxSelection:
    """The reference's `bbox_suppression`: score, area and filter-word tests, all strict, in float32."""
    scores = det.token_scores.max(axis=1) if det.token_scores.shape[1] else np.zeros(len(det.boxes_cxcywh), np.float32)
    areas = det.boxes_cxcywh[:, 2] * det.boxes_cxcywh[:, 3]
    ok = (scores > np.float32(box_threshold)) & (areas < np.float32(max_area)) & (areas > np.float32(min_area))
    on = det.token_scores > np.float32(text_threshold)
    phrases = [decode_phrase(det.tokens, on[i]) for i in range(len(det.boxes_cxcywh))]
    word = det.filter_word
    kept = [i for i in np.flatnonzero(ok) if not word or word not in phrases[i]]
    kept = np.asarray(kept, dtype=np.int64)
    return BoxSelection(kept=kept, scores=scores[kept].astype(np.float64), phrases=phrases)


def denormalise_boxes(boxes_cxcywh: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised cx, cy, w, h -> pixel x0, y0, x1, y1 with the reference's float32 in-place steps."""
    b = np.asarray(boxes_cxcywh, dtype=np.float32) * np.array([width, height, width, height], dtype=np.float32)
    b[:, :2] -= b[:, 2:] / np.float32(2)
    b[:, 2:] += b[:, :2]
    return b


@dataclass
class PassResult:
    """Survivors of one pass (object or defect), concatenated over its captions in prompt order."""

    selections: list[BoxSelection]
    src: np.ndarray  # (K, 2) int64: (caption index, candidate index) of each survivor
    boxes_cxcywh: np.ndarray  # (K, 4) float32
    boxes_xyxy: np.ndarray  # (K, 4) float32 pixels (what the segmenter gets)
    scores: np.ndarray  # (K,) float64
    max_box_area: np.float32 | None  # largest kept normalised box area; None when nothing was kept


def run_pass(dets: Sequence[CaptionDetections], image_hw: tuple[int, int], box_threshold: float,
             text_threshold: float, max_area: float, min_area: float = 0.0) -> PassResult:
    selections = [select_boxes(d, box_threshold, text_threshold, max_area, min_area) for d in dets]
    src = np.array([(j, i) for j, s in enumerate(selections) for i in s.kept], dtype=np.int64).reshape(-1, 2)
    boxes = np.stack([dets[j].boxes_cxcywh[i] for j, i in src]) if len(src) else np.zeros((0, 4), np.float32)
    scores = np.concatenate([s.scores for s in selections]) if selections else np.zeros(0)
    max_area_kept = np.float32(np.max(boxes[:, 2] * boxes[:, 3])) if len(src) else None
    return PassResult(selections=selections, src=src, boxes_cxcywh=boxes,
                      boxes_xyxy=denormalise_boxes(boxes, *image_hw), scores=scores.astype(np.float64),
                      max_box_area=max_area_kept)


def defect_area_limit(object_area: np.float32 | None, area_ratio: float) -> np.float32:
    """Largest allowed defect box area: object area x r, in float32 (object area 1 if none was kept)."""
    area = np.float32(1.0) if object_area is None else np.float32(object_area)
    return np.float32(area * np.float32(area_ratio))


# ------------------------------------------------------------------------------------------------
# 3. Saliency from ImageNet features
# ------------------------------------------------------------------------------------------------
def backbone_features(backbone, image_square: np.ndarray):
    """L2-normalised concatenation of the backbone's feature maps at the first map's size.

    `image_square`: S x S x 3 uint8 (already resized, so the reference's longest-side resize and padding
    are no-ops). Normalised with ImageNet statistics x 255 in float32; deeper maps upsampled with
    nearest (F.interpolate's default) as in the reference.
    """
    import torch
    import torch.nn.functional as F

    device = next(backbone.parameters()).device
    x = torch.as_tensor(np.ascontiguousarray(image_square), device=device).permute(2, 0, 1).contiguous()[None]
    mean = torch.tensor([m * 255 for m in IMAGENET_MEAN], device=device).view(-1, 1, 1)
    std = torch.tensor([s * 255 for s in IMAGENET_STD], device=device).view(-1, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        feats = list(backbone(x))
        size = feats[0].shape[2:]
        feats = [feats[0]] + [F.interpolate(f, size) for f in feats[1:]]
        return F.normalize(torch.cat(feats, dim=1), dim=1)


@dataclass
class Saliency:
    saliency: np.ndarray  # (H, W) float32 (single instance) or float64 (multi instance)
    pre_resize: np.ndarray  # on the feature grid
    resized_input: np.ndarray  # what the backbone saw
    features: object  # torch tensor (1, C, h, w), for diagnostics
    mode: str  # "single" or "multi"
    object_masks_feat: np.ndarray | None = None  # multi: object masks on the feature grid


def single_instance_saliency(image: np.ndarray, backbone, size: int = 256, top_n: int = 400) -> Saliency:
    """Mean of each position's `top_n` largest cosine dissimilarities to all positions of the image."""
    import torch

    cv2 = _cv2()
    h, w = image.shape[:2]
    resized = cv2.resize(image, (size, size))
    feats = backbone_features(backbone, resized)
    _, c, fh, fw = feats.shape
    flat = feats.view(c, fh * fw)
    with torch.no_grad():
        dis = 0.5 * (1 - flat.T @ flat)
        top = torch.topk(dis, min(top_n, fh * fw), dim=1, largest=True, sorted=True).values
        pre = torch.mean(top, dim=1).view(fh, fw).cpu().numpy()
    return Saliency(saliency=cv2.resize(pre, (w, h)), pre_resize=pre, resized_input=resized, features=feats,
                    mode="single")


def multi_instance_saliency(image: np.ndarray, object_masks: np.ndarray, backbone, size: int = 1024,
                            chunk: int = 2048) -> Saliency | None:
    """Per object, dissimilarity of each of its positions to the most similar position of the others.

    Returns None when fewer than two objects cover a feature-grid position (no "others" to compare).
    """
    cv2 = _cv2()
    h, w = image.shape[:2]
    resized = cv2.resize(image, (size, size))
    feats = backbone_features(backbone, resized)
    _, c, fh, fw = feats.shape
    grid = np.stack([cv2.resize(np.asarray(m).astype(np.int32), (fw, fh), interpolation=cv2.INTER_NEAREST) > 0
                     for m in object_masks]) if len(object_masks) else np.zeros((0, fh, fw), bool)
    present = [i for i in range(len(grid)) if grid[i].any()]
    if len(present) < 2:
        return None
    flat = feats.view(c, fh * fw)
    positions = [np.flatnonzero(grid[i].reshape(-1)) for i in present]  # row-major, as the reference
    best = _cross_object_best_similarity(flat, positions, chunk)
    maps = []
    for own, sim in zip(positions, best):
        m = np.zeros(fh * fw, dtype=np.float64)
        m[own] = (0.5 * (1.0 - sim)).cpu().numpy()
        maps.append(m.reshape(fh, fw))
    pre = maps[0]
    for m in maps[1:]:
        pre = np.maximum(pre, m)
    return Saliency(saliency=cv2.resize(pre, (w, h)), pre_resize=pre, resized_input=resized, features=feats,
                    mode="multi", object_masks_feat=grid)


def _cross_object_best_similarity(flat, positions: list[np.ndarray], chunk: int) -> list:
    """For each object, the max cosine similarity of each of its positions to the other objects' positions.

    The reference compares object i against the other objects' features read from a copy of the feature
    map in which object i's own positions are zeroed (so an overlapping position contributes 0). Each
    pair (i, j) is computed once here and used both ways (row maxima for i, column maxima for j), with
    the same zeroing, which halves the work of the reference's per-object products.
    """
    import torch

    dev = flat.device
    idx = [torch.as_tensor(p, device=dev) for p in positions]
    best = [torch.full((len(p),), -torch.inf, device=dev) for p in positions]
    for i in range(len(positions)):
        fi = flat[:, idx[i]].T
        for j in range(i + 1, len(positions)):
            fj = flat[:, idx[j]]
            col_in_i = torch.as_tensor(np.isin(positions[j], positions[i]), device=dev)  # zeroed for i
            row_in_j = torch.as_tensor(np.isin(positions[i], positions[j]), device=dev)  # zeroed for j
            col_best = torch.full((len(positions[j]),), -torch.inf, device=dev)
            with torch.no_grad():
                for s in range(0, len(positions[i]), chunk):
                    g = fi[s:s + chunk] @ fj
                    rows = torch.where(col_in_i[None, :], 0.0, g).max(dim=1).values
                    best[i][s:s + chunk] = torch.maximum(best[i][s:s + chunk], rows)
                    cols = torch.where(row_in_j[s:s + chunk, None], 0.0, g).max(dim=0).values
                    col_best = torch.maximum(col_best, cols)
            best[j] = torch.maximum(best[j], col_best)
    return best


# ------------------------------------------------------------------------------------------------
# 4. The regularisation proper: (scores, masks, saliency) -> map
# ------------------------------------------------------------------------------------------------
@dataclass
class Regularised:
    mask_mean_saliency: np.ndarray  # (K,) mean saliency inside each mask (dtype of the saliency map)
    rescores: np.ndarray  # (K,) float64
    topk: np.ndarray  # (k,) int64 indices into the masks, ascending score order (np.argsort()[-k:])
    map_native: np.ndarray  # (H, W) float64
    anomaly_map: np.ndarray  # (out, out) float64, or map_native when out_size is None


def regularise(scores: np.ndarray, masks: np.ndarray, saliency: np.ndarray, k_mask: int,
               gain: float = 3.0, out_size: int | None = None) -> Regularised:
    """Saliency rescoring, top-k confidence selection and fusion of defect masks into an anomaly map.

    scores: (K,) detector scores; masks: (K, H, W) bool, one per defect box; saliency: (H, W).
    s'_i = s_i * exp(gain * mean(saliency[m_i])) (factor 1 for an empty mask); keep the k_mask largest
    s'; map = sum(m_i * s'_i) / (1 + sum(m_i)). K = 0 gives an all-zero map. The mean and exponent
    are taken in the saliency map's dtype, as in the reference.
    """
    saliency = np.asarray(saliency)
    h, w = saliency.shape
    masks = np.asarray(masks, dtype=bool).reshape(-1, h, w)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(masks):
        raise ValueError(f"{len(scores)} scores for {len(masks)} masks")
    if k_mask < 1:
        raise ValueError(f"k_mask must be >= 1, got {k_mask}")
    g = saliency.dtype.type(gain) if np.issubdtype(saliency.dtype, np.floating) else gain
    means, factors = [], []
    for m in masks:
        vals = saliency[m]
        if vals.size == 0:
            means.append(saliency.dtype.type(0))
            factors.append(1.0)
        else:
            mean = vals.mean()
            means.append(mean)
            factors.append(np.exp(g * mean))
    rescores = np.array([s * f for s, f in zip(scores, factors)], dtype=np.float64)
    topk = np.argsort(rescores)[-k_mask:].astype(np.int64)
    acc = np.zeros((h, w), dtype=np.float64)
    weight = np.ones((h, w), dtype=np.float64)
    for i in topk:
        acc += masks[i] * rescores[i]
        weight += masks[i] * 1.0
    native = acc / weight
    out = native if out_size is None else _cv2().resize(native, (out_size, out_size))
    return Regularised(mask_mean_saliency=np.array(means, dtype=saliency.dtype), rescores=rescores, topk=topk,
                       map_native=native, anomaly_map=out)


# ------------------------------------------------------------------------------------------------
# The whole stage (what the parity fixture checks)
# ------------------------------------------------------------------------------------------------
@dataclass
class StageResult:
    object_pass: PassResult
    defect_pass: PassResult
    object_max_area: float
    defect_max_area: np.float32
    saliency: Saliency
    defect_masks: np.ndarray  # (K, H, W) bool
    result: Regularised
    fallbacks: dict[str, int] = field(default_factory=dict)


def hybrid_regularisation(image: np.ndarray, object_dets: Sequence[CaptionDetections],
                          defect_dets: Sequence[CaptionDetections],
                          segment: Callable[[np.ndarray], np.ndarray], object_number: int, k_mask: int,
                          area_ratio: float, backbone, box_threshold: float = 0.1, text_threshold: float = 0.1,
                          out_size: int | None = None, saliency_image: np.ndarray | None = None,
                          single_size: int = 256, multi_size: int = 1024, top_n: int = 400,
                          gain: float = 3.0) -> StageResult:
    """Object pass, defect passes, masks, saliency, rescoring and fusion for one image.

    `segment(boxes_xyxy)` returns one (H, W) bool mask per pixel box; it is called once, with the
    object boxes (only when n > 1: single-instance saliency does not use them) followed by the defect
    boxes. `saliency_image` is what the backbone sees (default: `image`; the reference passes BGR).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    object_max_area = 1.0 / object_number
    obj = run_pass(object_dets, (h, w), box_threshold, text_threshold, object_max_area, 0.0)
    limit = defect_area_limit(obj.max_box_area, area_ratio)
    dfx = run_pass(defect_dets, (h, w), box_threshold, text_threshold, limit, 0.0)

    n_obj = len(obj.boxes_xyxy) if object_number > 1 else 0
    boxes = np.concatenate([obj.boxes_xyxy[:n_obj], dfx.boxes_xyxy])
    masks = np.asarray(segment(boxes), dtype=bool).reshape(-1, h, w) if len(boxes) else np.zeros((0, h, w), bool)
    if len(masks) != len(boxes):
        raise ValueError(f"segmenter returned {len(masks)} masks for {len(boxes)} boxes")
    object_masks, defect_masks = masks[:n_obj], masks[n_obj:]

    sal_img = image if saliency_image is None else saliency_image
    fallbacks = {"multi_instance_to_single": 0}
    sal = None
    if object_number > 1:
        sal = multi_instance_saliency(sal_img, object_masks, backbone, size=multi_size)
        if sal is None:
            fallbacks["multi_instance_to_single"] = 1
    if sal is None:
        sal = single_instance_saliency(sal_img, backbone, size=single_size, top_n=top_n)
    result = regularise(dfx.scores, defect_masks, sal.saliency, k_mask, gain=gain, out_size=out_size)
    return StageResult(object_pass=obj, defect_pass=dfx, object_max_area=object_max_area, defect_max_area=limit,
                       saliency=sal, defect_masks=defect_masks, result=result, fallbacks=fallbacks)
