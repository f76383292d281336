"""SDP: the training-free staged dual-path model of CLIP-AD (Chen et al., IJCAI 2024).

"CLIP-AD: A Language-Guided Staged Dual-Path Model for Zero-shot Anomaly Detection"; reference code
ByChelsea/CLIP-AD @ f004973 (`test.py` with `test_SDP.sh`'s MVTec settings). Pipeline:

1. Text (prepare): 198 normal / 220 anomalous prompts for the category's object name, CLIP text
   embeddings, one representative vector per state by DBSCAN (`sdp_text`).
2. Image (predict): PIL bicubic resize to 240x240, the staged dual path on the CLIP ViT with stage
   outputs after blocks 3/6/9/12 (`sdp_vision`), CLIP Surgery's similarity summed over the stages,
   the anomalous channel of the 15x15 patch grid upsampled bilinearly to 240x240, Gaussian sigma 8,
   then resized bilinearly to each image's own size (the harness's contract).
3. Image scores: `last_image_scores` holds the reference's `pr_sp0` (softmax(100 cos) anomalous
   probability of the last stage's class token), `last_image_scores_map_max` its `pr_sp1` (max of the
   smoothed 240x240 map). The reference's final image score, min-max(pr_sp0) + min-max(pr_sp1) over
   all test images of a category, is `combine_image_scores`.

Parity: matches the fixture in ../shared/fixtures/sdp (the reference run on deterministic weights)
within its bounds; see docs/methods-sdp.md and tests/test_method_sdp.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from ..models.base import ModelSpec, Runtime
from .base import Method, MethodConfig, PrepareContext
from .sdp_text import REP_VEC_METHODS, TextFeatures, text_features
from .sdp_vision import OPENAI_MEAN, OPENAI_STD, anomaly_maps, check_visual, dual_path, image_probs, \
    preprocess, surgery_similarity


@dataclass
class SDPConfig(MethodConfig):
    model: str = "ViT-B-16-plus-240"  # open_clip architecture
    pretrained: str = "laion400m_e31"  # open_clip pretrained tag, or a local checkpoint file / folder
    layers: list[int] = field(default_factory=lambda: [3, 6, 9, 12])  # stage ends, 1-based blocks
    image_size: int = 240  # must equal the model's input size (the tiny-random profile uses the model's)
    rep_vec: str = "dbscan"  # representative text vector: "dbscan" or "mean"
    dbscan_eps: float = 0.5  # MVTec setting of the reference; its VisA setting is 1.5
    dbscan_min_samples: int = 15  # MVTec setting; VisA: 25
    smoothing_sigma: float = 8.0  # Gaussian sigma on the 240x240 map (0 = none)
    # True (reference parity): the class token put into stage b's output (b < depth) is the original
    # path's x after block b+1's attention residual, before its MLP: an aliasing side effect of the
    # reference's in-place `x_ori += attn` on the tensor it stored for stage b. False: the original
    # path's class token at the end of block b, i.e. the same layer as the patch tokens it joins, as
    # the paper describes. Only stages before the last block differ.
    class_token_after_next_attention: bool = True
    image_score_scale: float = 100.0  # logit scale of the image-level text score (the reference's 100)
    batch_size: int = 16


@dataclass
class SDPResult:
    """Everything one forward pass computed, at the model's input size (for parity and inspection)."""

    surgery_features: np.ndarray | None  # (S, B, N, D) normalised stage outputs, token 0 = class token
    per_layer_similarity: np.ndarray | None  # (S, B, N, 2)
    similarity: np.ndarray  # (B, N, 2) sum over stages
    anomaly_maps_raw: np.ndarray  # (B, size, size) before smoothing
    anomaly_maps: np.ndarray  # (B, size, size) after Gaussian smoothing
    image_probs: np.ndarray  # (B, 2) softmax(scale cos) over (normal, anomalous)
    stage_layers: list[int]


def combine_image_scores(text_scores: np.ndarray, map_max: np.ndarray) -> np.ndarray:
    """The reference's image score over all test images of a category: min-max(pr_sp0) + min-max(pr_sp1)."""
    def minmax(v):
        v = np.asarray(v, dtype=np.float64)
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    return (minmax(text_scores) + minmax(map_max)).astype(np.float32)


class SDP(Method):
    name = "sdp"
    display_name = "SDP"
    Config = SDPConfig
    description = "CLIP-AD's training-free staged dual path: CLIP ViT-B-16-plus-240 feature surgery, DBSCAN text vectors."
    reference = ("Chen et al., CLIP-AD: A Language-Guided Staged Dual-Path Model for Zero-shot Anomaly Detection, "
                 "IJCAI 2024; code github.com/ByChelsea/CLIP-AD @ f004973")

    def __init__(self, config: Any = None, runtime: Runtime | None = None):
        super().__init__(config, runtime)
        _validate(self.config)
        self._clip = None  # (model, tokenizer, mean, std) once loaded or attached
        self._text: TextFeatures | None = None
        self._object_name = ""
        self.last_result: SDPResult | None = None
        self.last_image_scores = np.zeros(0, np.float32)  # pr_sp0 of the last predict() call
        self.last_image_scores_map_max = np.zeros(0, np.float32)  # pr_sp1 of the last predict() call
        self._fallbacks = 0
        # Keep the per-token stage features in last_result (≈2.3 MB per image at 240 px): off for runs.
        self.keep_intermediates = False

    # --- models ----------------------------------------------------------------------------------
    def model_spec(self) -> ModelSpec:
        from ..models.open_clip import CLIP_B16_PLUS_240

        return dataclasses.replace(CLIP_B16_PLUS_240, source=self.config.pretrained, variant=self.config.model)

    def required_models(self) -> list[ModelSpec]:
        return [self.model_spec()]

    def attach_model(self, model, tokenizer, mean: Sequence[float] = OPENAI_MEAN,
                     std: Sequence[float] = OPENAI_STD) -> None:
        """Use this open_clip CLIP model and tokenizer instead of loading the configured spec."""
        check_visual(model.visual)
        self._clip = (model.eval(), tokenizer, tuple(mean), tuple(std))
        self._text = None

    def _ensure_model(self):
        if self._clip is None:
            from ..models import load

            wrapper = load(self.model_spec(), self.runtime)
            self.attach_model(wrapper.model, wrapper.tokenizer, wrapper.mean, wrapper.std)
        return self._clip

    def _image_size(self, visual) -> int:
        size = tuple(int(v) for v in visual.image_size) if hasattr(visual, "image_size") else None
        if size is None or size[0] != size[1]:
            raise UserError(f"SDP needs a square-input vision tower, got image size {size}")
        if size[0] != self.config.image_size and self.runtime.weights_are_real:
            raise UserError(f"SDP: image_size={self.config.image_size} but {self.config.model} takes "
                            f"{size[0]}x{size[0]} inputs (its positional embedding is fixed); set image_size={size[0]}")
        return size[0]

    # --- contract ----------------------------------------------------------------------------------
    def prepare(self, context: PrepareContext) -> None:
        model, tokenizer, _, _ = self._ensure_model()
        name = context.object_name or context.category.replace("_", " ")
        device = str(next(model.parameters()).device)
        self._text = text_features(model, tokenizer, name, device, self.config.rep_vec, self.config.dbscan_eps,
                                   self.config.dbscan_min_samples)
        self._object_name = name
        self._fallbacks = sum(r.fell_back for r in self._text.reps)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._text is None:
            raise UserError("SDP: prepare(context) must run before predict (it builds the text features)")
        images = list(images)
        results = []
        for start in range(0, len(images), self.config.batch_size):
            result = self.forward(images[start:start + self.config.batch_size])
            if not self.keep_intermediates:
                result.surgery_features = result.per_layer_similarity = None
            results.append(result)
        if not results:
            self.last_result = None
            self.last_image_scores = self.last_image_scores_map_max = np.zeros(0, np.float32)
            return []
        self.last_result = _concat(results)
        self.last_image_scores = self.last_result.image_probs[:, 1].copy()
        self.last_image_scores_map_max = self.last_result.anomaly_maps.reshape(len(images), -1).max(axis=1)
        return [_resize(m, img.shape[:2]) for m, img in zip(self.last_result.anomaly_maps, images)]

    def forward(self, images: Sequence[np.ndarray]) -> SDPResult:
        """SDP on a batch at the model's input size (no resizing back)."""
        import torch

        model, _, mean, std = self._ensure_model()
        visual = model.visual
        size = self._image_size(visual)
        param = visual.conv1.weight
        pixels = preprocess(images, size, mean, std).to(param.device, param.dtype)
        text = torch.from_numpy(self._text.features).to(param.device)
        with torch.no_grad():
            out = dual_path(visual, pixels, self.config.layers, self.config.class_token_after_next_attention)
            feats = [f.float() for f in out.surgery]
            per_layer = [surgery_similarity(f, text) for f in feats]
            similarity = sum(per_layer)
            raw, smooth = anomaly_maps(similarity, tuple(visual.grid_size), size, self.config.smoothing_sigma)
            probs = image_probs(feats[-1][:, 0], text, self.config.image_score_scale)
        return SDPResult(torch.stack(feats).cpu().numpy(), torch.stack(per_layer).cpu().numpy(),
                         similarity.cpu().numpy(), raw, smooth, probs.cpu().numpy(), out.stage_layers)

    def artifacts(self) -> dict[str, Any]:
        if self._text is None:
            return {}
        normal, anomalous = self._text.reps
        layers = self.last_result.stage_layers if self.last_result else None
        return {"object_name": self._object_name, "normal_prompts": self._text.prompts[0],
                "anomalous_prompts": self._text.prompts[1],
                "normal_cluster_size": normal.cluster_size, "anomalous_cluster_size": anomalous.cluster_size,
                "stage_layers": layers}

    def counters(self) -> dict[str, float]:
        return {"dbscan_fallbacks": float(self._fallbacks)}


def _validate(cfg: SDPConfig) -> None:
    if cfg.rep_vec not in REP_VEC_METHODS:
        raise UserError(f"SDP: rep_vec={cfg.rep_vec!r}; valid: {', '.join(REP_VEC_METHODS)}")
    if not cfg.layers:
        raise UserError("SDP: layers must list at least one block (1-based), e.g. [3, 6, 9, 12]")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in cfg.layers):
        raise UserError(f"SDP: layers must be positive block numbers (1-based), got {cfg.layers!r}")
    checks = [("dbscan_eps", cfg.dbscan_eps > 0), ("dbscan_min_samples", cfg.dbscan_min_samples >= 1),
              ("smoothing_sigma", cfg.smoothing_sigma >= 0), ("image_size", cfg.image_size > 0),
              ("batch_size", cfg.batch_size >= 1), ("image_score_scale", cfg.image_score_scale > 0)]
    for name, ok in checks:
        if not ok:
            raise UserError(f"SDP: {name}={getattr(cfg, name)!r} is out of range (must be positive"
                            f"{' or 0' if name == 'smoothing_sigma' else ''})")


def _concat(results: list[SDPResult]) -> SDPResult:
    if len(results) == 1:
        return results[0]
    def stages(key):
        parts = [getattr(r, key) for r in results]
        return None if any(p is None for p in parts) else np.concatenate(parts, axis=1)

    return SDPResult(stages("surgery_features"), stages("per_layer_similarity"),
                     *[np.concatenate([getattr(r, k) for r in results]) for k in
                       ("similarity", "anomaly_maps_raw", "anomaly_maps", "image_probs")],
                     results[0].stage_layers)


def _resize(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear (align_corners False) resize of a map to the image's (H, W), float32."""
    import torch
    import torch.nn.functional as F

    if anomaly_map.shape == tuple(shape):
        return anomaly_map.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()
