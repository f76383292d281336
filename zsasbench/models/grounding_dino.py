"""Grounding DINO open-set detector (family "grounding-dino") through transformers 5.

`GroundingDino.detect(image, prompt, box_threshold, text_threshold, nms_iou)` follows the official
`groundingdino.util.inference.predict` (IDEA-Research/GroundingDINO):
- the caption is lower-cased, stripped and ends with "." (`preprocess_caption`);
- per query, the sigmoid of the logit for every text token; the box score is the max over tokens, and a
  query is kept when that score is strictly above `box_threshold`;
- the phrase of a box is the decoded text of the tokens whose sigmoid is above `text_threshold`
  (`get_phrases_from_posmap`), with "." removed.

Differences from the official code and from transformers' `post_process_grounded_object_detection`, on
purpose (each makes the result better defined, none changes which boxes pass the thresholds):
- special tokens ([CLS], [SEP]) are never part of a phrase: the official code only masks position 0 and
  can return "[SEP]" inside a phrase when the [SEP] token scores above the text threshold;
- boxes are clipped to the image (the model can predict boxes slightly outside it; `clip_boxes=False`
  keeps them as predicted, as the reference code does) and returned as xyxy pixels of the ORIGINAL image
  (the official code returns normalised cxcywh);
- detections are sorted by score, descending (ties keep query order), so NMS and consumers see a
  deterministic order; the official code returns query order;
- optional NMS (`nms_iou`), greedy, suppressing IoU strictly above the threshold like
  `torchvision.ops.nms`, implemented in numpy here so that ties are broken deterministically;
- a prompt longer than the model's `max_text_len` (256) tokens is an error instead of a silent truncation;
- the image is resized (shortest side 800, longest 1333) and normalised by transformers'
  GroundingDinoImageProcessor, as the official `T.RandomResize([800], max_size=1333)` + ImageNet
  normalisation; the resampling kernels of the two libraries differ in the last bits;
- `token_logits` (N, T) and `tokens` expose the per-token sigmoid scores (SAA+ needs per-word scores).
`remove_combined=True` reproduces the official option of the same name (the phrase of a box is limited to
the " . "-separated phrase holding its best token).
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from . import hub
from .base import Availability, Family, ModelSpec, Runtime, register_family

# The Swin-T OGC weights the IAP-AS paper used, converted to transformers by IDEA-Research.
GROUNDING_DINO_TINY = ModelSpec("grounding-dino", "IDEA-Research/grounding-dino-tiny",
                                revision="a2bb814dd30d776dcf7e30523b00659f4f141c71", role="open-set detector")

_REQUIRED = ("config.json", "model.safetensors|pytorch_model.bin",
             "preprocessor_config.json|processor_config.json")  # transformers 5 saves the latter
_TINY_SEED = 1234


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    scores: np.ndarray  # (N,) float32: max over text tokens of sigmoid(logit)
    phrases: list[str]  # matched phrase per box
    token_logits: np.ndarray  # (N, T) float32 sigmoid score per text token
    tokens: list[str] = field(default_factory=list)  # the T text tokens (wordpieces, with [CLS]/[SEP])

    def __len__(self) -> int:
        return len(self.scores)

    def phrase_scores(self) -> tuple[list[str], np.ndarray]:
        """The prompt's phrases and, per box, the max token score inside each phrase: (P,), (N, P)."""
        spans = phrase_spans(self.tokens)
        table = np.zeros((len(self.scores), len(spans)), dtype=np.float32)
        for j, (_, start, stop) in enumerate(spans):
            if len(self.scores):
                table[:, j] = self.token_logits[:, start:stop].max(axis=1)
        return [name for name, _, _ in spans], table

    def subset(self, keep: np.ndarray) -> "Detections":
        keep = np.asarray(keep, dtype=np.int64)
        return Detections(self.boxes[keep], self.scores[keep], [self.phrases[i] for i in keep],
                          self.token_logits[keep], list(self.tokens))


def preprocess_caption(prompt: str) -> str:
    """Lower-case, strip and end with "." exactly like the official `preprocess_caption`."""
    caption = prompt.lower().strip()
    if not caption:
        raise UserError("Grounding DINO prompt is empty; give phrases separated by ' . '")
    return caption if caption.endswith(".") else caption + "."


def format_prompt(phrases: list[str]) -> str:
    """Phrases as Grounding DINO expects them: lower-case, separated by " . ", ending with " ."."""
    cleaned = [p.strip().lower() for p in phrases if p.strip()]
    if not cleaned:
        raise UserError("Grounding DINO prompt needs at least one non-empty phrase")
    return " . ".join(cleaned) + " ."


def _is_separator(token: str) -> bool:
    return token in (".", "[CLS]", "[SEP]", "[PAD]")


def _join_wordpieces(tokens: list[str]) -> str:
    text = ""
    for tok in tokens:
        if tok.startswith("##"):
            text += tok[2:]
        else:
            text += (" " if text else "") + tok
    return text


def phrase_spans(tokens: list[str]) -> list[tuple[str, int, int]]:
    """The " . "-separated phrases of a tokenized prompt as (text, first token, end token) slices."""
    spans = []
    start = None
    for i, tok in enumerate(list(tokens) + ["."]):
        if _is_separator(tok):
            if start is not None:
                spans.append((_join_wordpieces(tokens[start:i]), start, i))
                start = None
        elif start is None:
            start = i
    return spans


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (areas without the +1 convention, as torchvision)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; kept indices in descending score order (ties: lower index first).

    A box is suppressed when its IoU with a kept, higher-scoring box is strictly above `iou_threshold`
    (the rule of torchvision.ops.nms).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise UserError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if not 0.0 <= iou_threshold <= 1.0:
        raise UserError(f"nms: iou_threshold {iou_threshold} is outside [0, 1]")
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UserError(f"image must be an HxWx3 uint8 RGB array, got shape {shape} dtype {dtype}")
    return image


class GroundingDino:
    """A transformers GroundingDinoForObjectDetection with its processor, on one device."""

    def __init__(self, model, processor, device: str = "cpu", source: str = ""):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.source = source
        self.max_text_len = int(model.config.max_text_len)

    def detect(self, image: np.ndarray, prompt: str, box_threshold: float, text_threshold: float,
               nms_iou: float | None = None, remove_combined: bool = False, clip_boxes: bool = True) -> Detections:
        import torch
        from PIL import Image

        image = _check_image(image)
        for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"Grounding DINO {name} {value} is outside [0, 1]")
        caption = preprocess_caption(prompt)
        inputs = self.processor(images=Image.fromarray(image), text=caption, return_tensors="pt")
        input_ids = inputs["input_ids"][0].tolist()
        if len(input_ids) > self.max_text_len:
            raise UserError(f"Grounding DINO prompt has {len(input_ids)} tokens, more than the model's "
                            f"max_text_len {self.max_text_len}: {caption[:80]!r}...")
        dtype = next(self.model.parameters()).dtype
        inputs = {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        n_tok = len(input_ids)
        probs = out.logits[0, :, :n_tok].float().sigmoid().cpu().numpy()  # (Q, T)
        boxes = out.pred_boxes[0].float().cpu().numpy()  # (Q, 4) normalised cxcywh
        return postprocess(probs, boxes, input_ids, self.tokenizer, image.shape[:2], box_threshold,
                           text_threshold, nms_iou, remove_combined, clip_boxes)


def postprocess(probs: np.ndarray, boxes: np.ndarray, input_ids: list[int], tokenizer, image_size: tuple[int, int],
                box_threshold: float, text_threshold: float, nms_iou: float | None = None,
                remove_combined: bool = False, clip_boxes: bool = True) -> Detections:
    """Detections from per-query token scores (Q, T), normalised cxcywh boxes (Q, 4) and the prompt ids."""
    tokens = tokenizer.convert_ids_to_tokens(list(input_ids))
    probs = np.asarray(probs, dtype=np.float32).reshape(len(boxes), len(tokens))
    scores = probs.max(axis=1) if probs.shape[1] else np.zeros(len(probs), dtype=np.float32)
    keep = np.flatnonzero(scores > box_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    h, w = image_size
    cx, cy, bw, bh = np.asarray(boxes, dtype=np.float64)[keep].reshape(-1, 4).T
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * [w, h, w, h]
    if clip_boxes:
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
    xyxy = xyxy.astype(np.float32).reshape(-1, 4)
    det = Detections(xyxy, scores[keep].astype(np.float32), [], probs[keep], tokens)
    det.phrases = [_phrase(row, list(input_ids), tokens, tokenizer, text_threshold, remove_combined)
                   for row in det.token_logits]
    if nms_iou is not None and len(det):
        det = det.subset(nms(det.boxes, det.scores, nms_iou))
    return det


def _phrase(row: np.ndarray, input_ids: list[int], tokens: list[str], tokenizer, text_threshold: float,
            remove_combined: bool) -> str:
    positions = [i for i in np.flatnonzero(row > text_threshold) if not _is_separator(tokens[i])]
    if remove_combined:
        # the official rule: the span between the separators around the best token; a best token
        # that is itself a separator selects the phrase ending at it
        best = int(np.argmax(row))
        seps = [i for i, tok in enumerate(tokens) if _is_separator(tok)]
        right = next((s for s in seps if s >= best), len(tokens))
        left = max((s for s in seps if s < right), default=-1)
        positions = [i for i in positions if left < i < right]
    text = tokenizer.decode([input_ids[i] for i in positions])
    return text.replace(".", "").strip()


# ---------------------------------------------------------------- loading

def availability(spec: ModelSpec) -> Availability:
    if hub.is_local(spec.source):
        how = (f"save a transformers Grounding DINO folder there, e.g. `{hub.hub_command(GROUNDING_DINO_TINY.source, GROUNDING_DINO_TINY.revision)}`"
               f" and pass the folder it prints")
        return hub.local_availability(spec.source, how)
    return hub.hub_availability(spec.source, spec.revision, _REQUIRED)


def load(spec: ModelSpec, runtime: Runtime) -> GroundingDino:
    av = availability(spec)
    hub.require_present(spec, av)
    where = hub.pretrained_location(spec)
    if hub.is_local(spec.source) and not hub.local_path(spec.source).is_dir():
        raise UserError(f"Grounding DINO source {where} must be a transformers model folder (config.json, "
                        f"model.safetensors, preprocessor and tokenizer files), not a file; the official "
                        f".pth checkpoints need transformers' convert_grounding_dino_to_hf.py first")
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    hub.quiet_transformers()
    kwargs = hub.hub_kwargs(spec)
    processor = AutoProcessor.from_pretrained(where, **kwargs)
    model = GroundingDinoForObjectDetection.from_pretrained(where, dtype=hub.torch_dtype(runtime.dtype), **kwargs)
    device = runtime.torch_device
    return GroundingDino(model.to(device), processor, device, source=av.location)


def tiny_vocab() -> dict[str, int]:
    """A small BERT wordpiece vocabulary that spells any lower-case ASCII word (letters as pieces)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", "'"]
    words += list(string.ascii_lowercase) + list(string.digits)
    words += ["##" + c for c in string.ascii_lowercase + string.digits]
    words += ["abnormal", "defect", "crack", "scratch", "hole", "object", "the"]
    return {w: i for i, w in enumerate(dict.fromkeys(words))}  # ids dense even if a word repeats


def build_tiny(seed: int = _TINY_SEED, image_size: int = 128):
    """A tiny random-weight GroundingDinoForObjectDetection and its processor (built offline, seeded).

    Swin backbone, BERT text encoder and the deformable encoder/decoder of the real architecture at
    toy width. decoder_layers=2 because the default box-head sharing needs at least two layers.
    """
    import torch
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    vocab = tiny_vocab()
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)  # vocab= (vocab_file= is ignored in v5)
    backbone = SwinConfig(image_size=image_size, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                          num_heads=[1, 1, 1, 1], window_size=4, out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=30, encoder_layers=1,
                                 decoder_layers=2, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2,
                                 decoder_n_points=2, max_text_len=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size,
                                                        "longest_edge": image_size * 3 // 2})
    return model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_random(spec: ModelSpec, runtime: Runtime) -> GroundingDino:
    model, processor = build_tiny()
    device = runtime.torch_device
    return GroundingDino(model.to(device), processor, device, source="tiny-random")


register_family("grounding-dino", Family(load=load, availability=availability, tiny_random=tiny_random))
