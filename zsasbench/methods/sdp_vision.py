"""SDP image side: the staged dual path on an open_clip ViT, feature-surgery similarity, maps, scores.

Written from CLIP-AD's description and its code (ByChelsea/CLIP-AD @ f004973: the vendored
`open_clip/transformer.py`, `util/surgery.py`, `test.py`), for any open_clip `VisionTransformer`
whose blocks use `nn.MultiheadAttention` (the standard CLIP ViTs). The model's own modules and
weights are used; only the forward pass is ours, so nothing is patched into the model.

Layout: open_clip >= 2.23 runs its transformer batch-first, the reference's vendored 2.20 copy was
sequence-first. Everything here is (batch, tokens, channels) throughout and never calls the model's
transformer, so the layout of the installed open_clip does not matter.

The dual path, per block (h = ln_1(x_ori); q, k, v from the block's in_proj):
  ori = out_proj(softmax(q kᵀ·s) v)      the standard attention (original CLIP path)
  vv  = out_proj(softmax(v vᵀ·s) v)      q and k replaced by v ("feature surgery" path)
  x_ori <- x_ori + ori;  x_ori <- x_ori + MLP(ln_2(x_ori))
  x_new <- vv at the first block of a stage, x_new + vv otherwise (no MLP, no residual from x_ori).
A stage ends at each configured layer; its output is x_new with token 0 replaced by the class token
of the original path, then ln_post, proj and L2 normalisation per token.

Stages. The reference restarts x_new at blocks where `count % (depth / 4) == 0` (0-based), i.e. at
blocks 1, 4, 7, 10 of 12 whatever its `features_list` says. Here a stage restarts at block 1 and right
after every configured layer, which is the same for the default layers 3/6/9/12 of a 12-block model
and stays meaningful for other layer lists and depths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# --- preprocessing ----------------------------------------------------------------------------------
def preprocess(images: Sequence[np.ndarray], size: int, mean: Sequence[float] = OPENAI_MEAN,
               std: Sequence[float] = OPENAI_STD) -> torch.Tensor:
    """The reference's open_clip transform: PIL bicubic resize to size x size (antialiased, rounded to
    uint8; aspect ratio not kept), /255, normalise. Returns (B, 3, size, size) float32."""
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    mean_a = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_a = np.asarray(std, dtype=np.float32)[:, None, None]
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise UserError(f"SDP: image {i} must be an HxWx3 uint8 RGB array, got {desc}")
        resized = Image.fromarray(image, mode="RGB").resize((size, size), Image.BICUBIC)
        chw = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
        out[i] = (chw - mean_a) / std_a
    return torch.from_numpy(out)


# --- model checks ------------------------------------------------------------------------------------
def check_visual(visual) -> None:
    """Fail clearly on towers this forward pass does not cover (CNN towers, attention pooling, ...)."""
    needed = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj")
    missing = [n for n in needed if not hasattr(visual, n)]
    if missing:
        raise UserError(f"SDP needs an open_clip VisionTransformer; {type(visual).__name__} lacks {', '.join(missing)}")
    if getattr(visual, "attn_pool", None) is not None:
        raise UserError("SDP: open_clip towers with attentional pooling are not supported")
    if visual.proj is None:
        raise UserError("SDP: the vision tower has no projection (proj is None)")
    for i, blk in enumerate(visual.transformer.resblocks):
        if not isinstance(blk.attn, torch.nn.MultiheadAttention) or blk.attn.in_proj_weight is None:
            raise UserError(f"SDP: vision block {i} does not use a packed nn.MultiheadAttention")


def resolve_layers(layers: Sequence[int], depth: int) -> list[int]:
    """Configured stage layers (1-based) that exist in a `depth`-block tower, sorted and unique.

    Layers deeper than the tower are dropped (a tiny test model has fewer blocks); if none is left,
    the last block is used, so there is always one stage.
    """
    bad = [v for v in layers if int(v) != v or v < 1]
    if bad:
        raise UserError(f"SDP: layers must be positive block numbers (1-based), got {list(layers)}")
    kept = sorted({int(v) for v in layers if v <= depth})
    return kept or [depth]


# --- the dual path ---------------------------------------------------------------------------------
def _embed(visual, pixels: torch.Tensor) -> torch.Tensor:
    x = visual.conv1(pixels)  # (B, C, gh, gw)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                           device=x.device)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(x)


def dual_attention(attn: torch.nn.MultiheadAttention, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(standard attention, v-v attention) of one block on h (B, N, C), both through out_proj."""
    b, n, c = h.shape
    heads = attn.num_heads
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # each (B, H, N, D)
    scale = (c // heads) ** -0.5
    ori = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1) @ v
    vv = ((v @ v.transpose(-2, -1)) * scale).softmax(dim=-1) @ v
    out = attn.out_proj
    ori = F.linear(ori.transpose(1, 2).reshape(b, n, c), out.weight, out.bias)
    vv = F.linear(vv.transpose(1, 2).reshape(b, n, c), out.weight, out.bias)
    return ori, vv


@dataclass
class DualPathOutput:
    surgery: list[torch.Tensor]  # per stage (B, N, D_out), L2-normalised per token, token 0 = class token
    stage_layers: list[int]


def dual_path(visual, pixels: torch.Tensor, layers: Sequence[int],
              class_token_after_next_attention: bool = True) -> DualPathOutput:
    """Run the staged dual path and return the normalised, projected stage outputs.

    class_token_after_next_attention: True reproduces the reference (see SDPConfig); False takes the
    class token of the original path at the end of the stage's own last block.
    """
    blocks = list(visual.transformer.resblocks)
    stage_layers = resolve_layers(layers, len(blocks))
    last = stage_layers[-1]
    x_ori = _embed(visual, pixels)
    x_new = None
    restart = True
    stages: list[tuple[torch.Tensor, torch.Tensor]] = []  # (x_new, class token) per stage
    awaiting = False  # the previous stage still waits for its (quirk) class token
    for number, blk in enumerate(blocks, start=1):
        if number > last and not awaiting:
            break
        ori, vv = dual_attention(blk.attn, blk.ln_1(x_ori))
        ori, vv = blk.ls_1(ori), blk.ls_1(vv)
        x_new = vv if restart else x_new + vv
        x_mid = x_ori + ori
        if awaiting:
            # The reference's `x_ori += attn` in the next block mutates the tensor it stored for the stage.
            stages[-1] = (stages[-1][0], x_mid[:, 0].clone())
            awaiting = False
        x_ori = x_mid + blk.ls_2(blk.mlp(blk.ln_2(x_mid)))
        restart = number in stage_layers
        if restart:
            stages.append((x_new, x_ori[:, 0]))
            awaiting = class_token_after_next_attention and number < len(blocks)
    surgery = []
    for tokens, cls in stages:
        tokens = torch.cat([cls[:, None, :], tokens[:, 1:]], dim=1)
        feats = visual.ln_post(tokens) @ visual.proj
        surgery.append(feats / feats.norm(dim=-1, keepdim=True))
    return DualPathOutput(surgery, stage_layers)


# --- similarity, maps, scores ------------------------------------------------------------------------
def surgery_similarity(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's feature-surgery similarity of one stage as CLIP-AD uses it (no temperature).

    features (B, N, D) normalised tokens (token 0 = class token); text (D, T). Returns (B, N, T):
    s_c = w_c * (f · t_c) - mean over classes of the same, with w = p / mean(p), p = softmax(f_0 · T).
    Computed element-wise before the channel sum, as the reference does, to stay within float noise.
    """
    prob = (features[:, :1, :] @ text).softmax(dim=-1)  # (B, 1, T)
    w = prob / prob.mean(dim=-1, keepdim=True)
    feats = features[:, :, None, :] * text.t()[None, None, :, :]  # (B, N, T, D)
    feats = feats * w[:, :, :, None]
    feats = feats - feats.mean(dim=2, keepdim=True)
    return feats.sum(dim=-1)


def anomaly_maps(similarity: torch.Tensor, grid: tuple[int, int], size: int, sigma: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(raw, smoothed) maps (B, size, size) float32 from the anomalous channel of the patch tokens:
    bilinear upsampling (align_corners False), then scipy's Gaussian filter (reflect mode)."""
    from scipy.ndimage import gaussian_filter

    patches = similarity[:, 1:, 1].reshape(similarity.shape[0], 1, grid[0], grid[1])
    raw = F.interpolate(patches, (size, size), mode="bilinear", align_corners=False)[:, 0]
    raw = raw.cpu().numpy().astype(np.float32)
    smooth = np.stack([gaussian_filter(m, sigma=sigma) for m in raw]) if sigma > 0 else raw.copy()
    return raw, smooth.astype(np.float32)


def image_probs(class_embedding: torch.Tensor, text: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """softmax(scale * cos(image, text)) over (normal, anomalous): (B, 2)."""
    return (scale * class_embedding @ text).softmax(dim=-1)
