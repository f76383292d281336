"""WinCLIP, zero-shot (Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation",
CVPR 2023), following anomalib 2.7.0's re-implementation (`anomalib/models/image/winclip`), which the
parity fixture ../shared/fixtures/winclip/ records.

Pipeline (all in the model's dtype, float32 by default):
  1. Text: the compositional prompt ensemble (7 normal / 4 anomalous state words x 21 templates, with
     the category's object name). Each class embedding is the plain mean of the raw (unnormalised)
     prompt embeddings. anomalib lists "a jpeg corrupted photo of the {}." twice (so the mean weights it
     twice) and lacks "a cropped photo of a {}."; that quirk is kept by default for parity, and
     `templates="full"` uses the 22 distinct templates instead.
  2. Image: resized to the CLIP input size (240) with antialiased bicubic on the float image, no crop.
     Full-image embedding, plus one embedding per k x k window of patch tokens (k = 2, 3, stride 1):
     a window's sequence is the class token followed by its patches, all taken after the positional
     embedding (patches keep their full-image positions) and run through ln_pre, the blocks, ln_post
     and the projection.
  3. Score of an embedding = softmax([cos(e, T_normal), cos(e, T_anomalous)] / 0.07)[anomalous].
  4. Per scale, each patch gets the harmonic mean of the scores of the windows containing it; the map
     is the harmonic mean of the image score, the scale-2 map and the scale-3 map, upsampled bilinearly
     to 240 x 240 (anomalib's output) and then to the image's own size.

The image-level WinCLIP score (score of the full-image embedding, not a map maximum) of the last
predict() call is kept in `last_image_scores`.

open_clip >= 2.26 runs its transformer batch-first while anomalib (pinned to open_clip < 2.26.1)
permutes to sequence-first itself; the port runs the blocks through `OpenClip.run_blocks`, which
handles either layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..models import ModelSpec, load
from ..models.open_clip import CLIP_B16_PLUS_240, FAMILY as OPEN_CLIP
from .base import Method, MethodConfig, PrepareContext

NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
# anomalib's list: "a jpeg corrupted photo of the {}." appears twice (kept for parity).
TEMPLATES = (
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.", "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.", "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.",
    "a blurry photo of a {}.", "a photo of a {}.", "a photo of the {}.", "a photo of a small {}.",
    "a photo of the small {}.", "a photo of a large {}.", "a photo of the large {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
)

# The 22 templates the anomalib list was meant to hold: with "a cropped photo of a {}." and the "of a"
# variant of the jpeg template instead of anomalib's duplicate (the list used by other WinCLIP
# re-implementations). Selected by `templates="full"`; "anomalib" (default) is needed for parity.
TEMPLATES_FULL = (
    "a cropped photo of the {}.", "a cropped photo of a {}.", *TEMPLATES[1:7],
    "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.", *TEMPLATES[9:],
)
TEMPLATE_SETS = {"anomalib": TEMPLATES, "full": TEMPLATES_FULL}


def prompt_ensemble(class_name: str, templates: str = "anomalib") -> tuple[list[str], list[str]]:
    """(normal prompts, anomalous prompts), state-major: for each state word, every template."""
    if templates not in TEMPLATE_SETS:
        raise UserError(f"winclip: templates must be one of {', '.join(TEMPLATE_SETS)}, got {templates!r}")

    def build(states):
        return [t.format(s.format(class_name)) for s in states for t in TEMPLATE_SETS[templates]]

    return build(NORMAL_STATES), build(ANOMALOUS_STATES)


def window_masks(grid: int, k: int) -> np.ndarray:
    """(k*k, n_windows) patch indices (row * grid + col) of every k x k window, stride 1, row-major."""
    if not 1 <= k <= grid:
        raise UserError(f"winclip: window scale {k} must be between 1 and the patch grid size {grid}")
    n = grid - k + 1
    r0, c0 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    dr, dc = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    idx = (r0.reshape(1, -1) + dr.reshape(-1, 1)) * grid + (c0.reshape(1, -1) + dc.reshape(-1, 1))
    return idx.astype(np.int64)


def class_probabilities(embeddings, text_embeddings, temperature: float):
    """(..., 2) softmax over [normal, anomalous] of the cosine similarities / temperature."""
    import torch
    import torch.nn.functional as F

    e = F.normalize(embeddings, dim=-1)
    t = F.normalize(text_embeddings, dim=-1)
    return torch.softmax((e @ t.T) / temperature, dim=-1)


def class_scores(embeddings, text_embeddings, temperature: float):
    """Anomalous probability of each embedding (..., D) against (2, D) [normal, anomalous] text."""
    return class_probabilities(embeddings, text_embeddings, temperature)[..., 1]


def harmonic_aggregation(window_scores, masks: np.ndarray, grid: int):
    """(B, n_windows) window scores -> (B, grid, grid): per patch, n / sum(1 / s) over its windows."""
    import torch

    b = window_scores.shape[0]
    idx = torch.from_numpy(masks).to(window_scores.device)  # (k*k, n)
    inv = (1.0 / window_scores)[:, None, :].expand(b, idx.shape[0], idx.shape[1])
    total = torch.zeros(b, grid * grid, dtype=window_scores.dtype, device=window_scores.device)
    total.scatter_add_(1, idx.reshape(1, -1).expand(b, -1), inv.reshape(b, -1))
    count = torch.zeros(grid * grid, dtype=window_scores.dtype, device=window_scores.device)
    count.scatter_add_(0, idx.reshape(-1), torch.ones(idx.numel(), dtype=window_scores.dtype,
                                                       device=window_scores.device))
    return (count / total).reshape(b, grid, grid)


@dataclass
class WinCLIPConfig(MethodConfig):
    weights: str = CLIP_B16_PLUS_240.source  # open_clip pretrained tag, checkpoint file or folder
    backbone: str = CLIP_B16_PLUS_240.variant  # open_clip architecture name
    scales: tuple[int, ...] = (2, 3)  # window sizes in patches (the whole image is always added)
    temperature: float = 0.07
    class_name: str = ""  # object name in the prompts; empty = the dataset's object name
    templates: str = "anomalib"  # "anomalib": its 21 templates, one listed twice (parity); "full": 22 distinct


class WinCLIP(Method):
    name = "winclip"
    display_name = "WinCLIP"
    Config = WinCLIPConfig
    description = "Zero-shot WinCLIP: CLIP prompt ensemble scored on multi-scale windows, harmonic aggregation."
    reference = ("Jeong et al., WinCLIP, CVPR 2023; port of anomalib 2.7.0 "
                 "anomalib/models/image/winclip/torch_model.py (zero-shot)")

    window_batch = 512  # window sequences per forward pass (memory only, not a hyperparameter)
    keep_outputs = False  # when True, predict() keeps every stage of the last batch in `last_outputs`

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        if not self.config.scales:
            raise UserError("winclip: scales must list at least one window size")
        prompt_ensemble("x", self.config.templates)  # validates the template set name
        self.clip = None
        self.class_name = None
        self.text_embeddings = None
        self.last_image_scores = np.zeros(0, np.float32)
        self._scores_seen: list[float] = []

    def spec(self) -> ModelSpec:
        return ModelSpec(OPEN_CLIP, self.config.weights, variant=self.config.backbone,
                         role="CLIP image/text encoder")

    def required_models(self) -> list[ModelSpec]:
        return [self.spec()]

    def _model(self):
        if self.clip is None:
            self.clip = load(self.spec(), self.runtime)
            grid = self.clip.grid_size
            if grid[0] != grid[1]:
                raise UserError(f"winclip: needs a square patch grid, {self.config.backbone} has {grid}")
            for k in self.config.scales:
                window_masks(grid[0], k)  # validates the scale
        return self.clip

    def prepare(self, context: PrepareContext) -> None:
        self.set_class_name(self.config.class_name or context.object_name or context.category.replace("_", " "))
        self._scores_seen = []

    def set_class_name(self, class_name: str) -> None:
        if not class_name:
            raise UserError("winclip: empty object name for the prompts")
        if class_name != self.class_name or self.text_embeddings is None:
            self.text_embeddings = self.encode_class_text(class_name)
            self.class_name = class_name

    def encode_class_text(self, class_name: str):
        """(2, D) raw class embeddings: mean of the unnormalised prompt embeddings, [normal, anomalous]."""
        import torch

        clip = self._model()
        normal, anomalous = prompt_ensemble(class_name, self.config.templates)
        return torch.stack([clip.encode_text(normal).mean(dim=0), clip.encode_text(anomalous).mean(dim=0)])

    def forward(self, pixels) -> dict:
        """All WinCLIP stages for a preprocessed batch (B, 3, 240, 240); tensors keyed as in the fixture."""
        import torch
        import torch.nn.functional as F

        if self.text_embeddings is None:
            raise UserError("winclip: prepare() (or set_class_name) must run before predict")
        clip = self._model()
        grid = clip.grid_size[0]
        out = {}
        with torch.no_grad():
            tokens = clip.embed_patches(pixels)
            out["feature_map"] = tokens
            out["image_embeddings"] = clip.encode_tokens(tokens)
            out["image_probs"] = class_probabilities(out["image_embeddings"], self.text_embeddings,
                                                     self.config.temperature)
            image_scores = out["image_probs"][:, 1]
            out["image_scores"] = image_scores
            maps = [image_scores.view(-1, 1, 1).expand(-1, grid, grid)]
            b, _, width = tokens.shape
            for k in self.config.scales:
                masks = window_masks(grid, k)
                out[f"window_masks_scale{k}"] = masks
                idx = torch.from_numpy(masks.T + 1).to(tokens.device)  # (n, k*k) token positions
                n = idx.shape[0]
                patches = tokens[:, idx.reshape(-1)].reshape(b * n, k * k, width)
                cls = tokens[:, :1].expand(b, n, width).reshape(b * n, 1, width)
                seqs = torch.cat([cls, patches], dim=1)
                emb = torch.cat([clip.encode_tokens(seqs[i:i + self.window_batch])
                                 for i in range(0, seqs.shape[0], self.window_batch)]).reshape(b, n, -1)
                out[f"window_embeddings_scale{k}"] = emb
                scores = class_scores(emb, self.text_embeddings, self.config.temperature)
                out[f"window_scores_scale{k}"] = scores
                scale_map = harmonic_aggregation(scores, masks, grid)
                out[f"scale_map_scale{k}"] = scale_map
                maps.append(scale_map)
            stacked = torch.stack(maps)  # (1 + n_scales, B, grid, grid)
            out["multi_scale_map"] = stacked.shape[0] / (1.0 / stacked).sum(dim=0)
            out["anomaly_maps"] = F.interpolate(out["multi_scale_map"][:, None], size=tuple(pixels.shape[-2:]),
                                                mode="bilinear", align_corners=False)[:, 0]
        return out

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch.nn.functional as F

        clip = self._model()
        pixels = clip.preprocess(images)
        out = self.forward(pixels)
        if self.keep_outputs:
            self.last_outputs = dict(out, batch=pixels, text_embeddings=self.text_embeddings)
        self.last_image_scores = out["image_scores"].float().cpu().numpy().astype(np.float32)
        self._scores_seen.extend(self.last_image_scores.tolist())
        maps = []
        for i, img in enumerate(images):
            m = out["anomaly_maps"][i:i + 1, None].float()
            m = F.interpolate(m, size=tuple(np.asarray(img).shape[:2]), mode="bilinear", align_corners=False)
            maps.append(m[0, 0].cpu().numpy().astype(np.float32))
        return maps

    def counters(self) -> dict[str, float]:
        if not self._scores_seen:
            return {}
        s = np.asarray(self._scores_seen)
        return {"image_score_mean": float(s.mean()), "image_score_max": float(s.max())}

    def artifacts(self) -> dict:
        if self.class_name is None:
            return {}
        normal, anomalous = prompt_ensemble(self.class_name, self.config.templates)
        return {"class_name": self.class_name, "n_normal_prompts": len(normal),
                "n_anomalous_prompts": len(anomalous)}
