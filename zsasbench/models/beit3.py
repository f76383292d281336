"""BEiT-3 multiway encoder (Wang et al., 2022), as EVF-SAM uses it for early vision-language fusion.

Our own implementation of the computation of `torchscale.model.BEiT3.BEiT3` (torchscale 0.2.0, the version
EVF-SAM pins), with the same module tree, so a state dict saved from torchscale (or from EVF-SAM, under
its `mm_extractor.beit3.` prefix) loads here key for key.

Why not import torchscale: torchscale 0.2.0 declares `timm==0.4.12` and `fairscale==0.4.0` as hard
requirements (timm 0.4.12 conflicts with the timm >= 1.0 that open_clip and SAA+ need, so it can only be
installed with `pip install --no-deps`), and it imports fairscale at module import. The encoder path
EVF-SAM runs is small (pre-LN multiway transformer with sub-LN), so it lives here; the tests compare it
with torchscale when torchscale happens to be installed.

What the encoder computes (the configuration EVF-SAM uses: multiway, subln, pre-LN, normalize_output,
no relative position bias, no xpos, no embedding scale, no embedding LayerNorm):
  x = [CLS, patches] ++ text_embed(ids)  (+ position embeddings; positions start at 2 per modality,
      the fairseq convention: vision rows 2..V+1 of table A, text rows 2..L+1 of table B)
  padded text positions are zeroed; then per layer (A weights for the first V tokens, B for the rest):
      x = x + out_proj(inner_attn_ln(attention(self_attn_layer_norm(x))))
      x = x + fc2(ffn_layernorm(gelu(fc1(final_layer_norm(x)))))
  and a final multiway LayerNorm.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class Beit3Config:
    embed_dim: int = 1024
    layers: int = 24
    heads: int = 16
    ffn_dim: int = 4096
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    vocab_size: int = 64010
    max_source_positions: int = 1024
    layernorm_eps: float = 1e-5

    def __post_init__(self):
        if self.embed_dim % self.heads:
            raise UserError(f"BEiT-3 config: embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.img_size % self.patch_size:
            raise UserError(f"BEiT-3 config: img_size {self.img_size} is not a multiple of patch_size "
                            f"{self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def vision_tokens(self) -> int:
        return self.num_patches + 1  # CLS first

    def to_dict(self) -> dict:
        return asdict(self)


# The two scales EVF-SAM builds (upstream `_get_base_config` / `_get_large_config`).
BEIT3_BASE = Beit3Config(embed_dim=768, layers=12, heads=12, ffn_dim=3072)
BEIT3_LARGE = Beit3Config(embed_dim=1024, layers=24, heads=16, ffn_dim=4096)


class Multiway(nn.Module):
    """Two copies of a module: `A` for the first `split` tokens (vision), `B` for the rest (text)."""

    def __init__(self, a: nn.Module, b: nn.Module):
        super().__init__()
        self.A = a
        self.B = b

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        if split <= 0:
            return self.B(x)
        if split >= x.shape[1]:
            return self.A(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


def _multiway_linear(d_in: int, d_out: int) -> Multiway:
    return Multiway(nn.Linear(d_in, d_out), nn.Linear(d_in, d_out))


def _multiway_norm(dim: int, eps: float) -> Multiway:
    return Multiway(nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, eps: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.ffn_layernorm = nn.LayerNorm(ffn_dim, eps=eps)
        self.fc2 = nn.Linear(ffn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = F.gelu(h.float()).type_as(h)  # exact GELU, evaluated in float32 as torchscale does
        return self.fc2(self.ffn_layernorm(h))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = _multiway_linear(dim, dim)
        self.v_proj = _multiway_linear(dim, dim)
        self.q_proj = _multiway_linear(dim, dim)
        self.out_proj = _multiway_linear(dim, dim)
        self.inner_attn_ln = _multiway_norm(dim, eps)

    def forward(self, x: torch.Tensor, split: int, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q_proj(x, split) * self.scaling  # scale after the bias, as torchscale
        k = self.k_proj(x, split)
        v = self.v_proj(x, split)
        q, k, v = (t.view(b, n, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
        out = (probs @ v).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(self.inner_attn_ln(out, split), split)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.self_attn = SelfAttention(cfg.embed_dim, cfg.heads, cfg.layernorm_eps)
        self.self_attn_layer_norm = _multiway_norm(cfg.embed_dim, cfg.layernorm_eps)
        self.ffn = Multiway(FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.layernorm_eps),
                            FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.layernorm_eps))
        self.final_layer_norm = _multiway_norm(cfg.embed_dim, cfg.layernorm_eps)

    def forward(self, x: torch.Tensor, split: int, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x, split), split, key_padding_mask)
        return x + self.ffn(self.final_layer_norm(x, split), split)


class VisionEmbedding(nn.Module):
    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.img_size = cfg.img_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))  # pre-training only; kept for the keys

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-2:] != (self.img_size, self.img_size):
            raise UserError(f"BEiT-3 expects {self.img_size}x{self.img_size} pixels, got "
                            f"{tuple(pixels.shape[-2:])}")
        x = self.proj(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)


class Encoder(nn.Module):
    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.embed_positions = Multiway(nn.Embedding(cfg.vision_tokens + 2, cfg.embed_dim),
                                        nn.Embedding(cfg.max_source_positions, cfg.embed_dim))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.layer_norm = _multiway_norm(cfg.embed_dim, cfg.layernorm_eps)


class BEiT3(nn.Module):
    """BEiT-3 vision-language encoder; `forward(pixels, input_ids)` returns the final hidden states
    (B, V + L, D) with the V vision tokens (CLS first) before the L text tokens."""

    def __init__(self, cfg: Beit3Config):
        super().__init__()
        self.cfg = cfg
        self.text_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.vision_embed = VisionEmbedding(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                text_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixels (B, 3, S, S) normalised; input_ids (B, L) int; text_padding_mask (B, L) bool, True = pad.

        Upstream EVF-SAM inference passes no padding (a single prompt per forward); padding here lets
        prompts of different lengths share a batch with the same result as one forward each.
        """
        cfg = self.cfg
        n_text = input_ids.shape[1]
        if n_text + 2 > cfg.max_source_positions:
            raise UserError(f"BEiT-3: text of {n_text} tokens is longer than the {cfg.max_source_positions - 2} "
                            "positions the model has")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= cfg.vocab_size:
            raise UserError(f"BEiT-3: token ids must be in [0, {cfg.vocab_size}), got "
                            f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        vis = self.vision_embed(pixels)
        txt = self.text_embed(input_ids)
        split = vis.shape[1]
        device = vis.device
        pos_a = self.encoder.embed_positions.A(torch.arange(2, split + 2, device=device))
        pos_b = self.encoder.embed_positions.B(torch.arange(2, n_text + 2, device=device))
        x = torch.cat([vis + pos_a, txt + pos_b], dim=1)
        key_padding_mask = None
        if text_padding_mask is not None:
            text_padding_mask = text_padding_mask.to(device=device, dtype=torch.bool)
            key_padding_mask = torch.cat(
                [torch.zeros(x.shape[0], split, dtype=torch.bool, device=device), text_padding_mask], dim=1)
            x = x * (~key_padding_mask).unsqueeze(-1).to(x.dtype)
            if not bool(key_padding_mask.any()):
                key_padding_mask = None
        for layer in self.encoder.layers:
            x = layer(x, split, key_padding_mask)
        return self.encoder.layer_norm(x, split)


def init_beit3_(model: BEiT3, seed: int = 0) -> BEiT3:
    """Deterministic random init (for the tiny-random profile): N(0, 1/fan_in) weights, zero biases,
    unit LayerNorms, as a stand-in for trained weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                fan_in = max(1, math.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    return model
