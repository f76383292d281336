"""RAM / RAM++ tagging network: Swin image encoder, label queries and the Query2Label-style tagging head.

Ported from xinyu1205/recognize-anything (commit 7cb804a8, ram/models/ram.py, ram_plus.py, bert.py), tagging
path only. Module names follow the official state-dict keys (`visual_encoder`, `image_proj`, `label_embed`,
`wordvec_proj`, `tagging_head.encoder.layer.N.{crossattention,intermediate,output}`, `fc`, `reweight_scale`).

Not built (not used by tagging): the caption branch (`tag_encoder`, `text_decoder`), the tokenizer, and the
tagging head's deleted embeddings/self-attention. The tagging head's layers reduce to: cross-attention from
the label queries to the image tokens (no mask: upstream's mask is all ones), add & LayerNorm, then a GELU
feed-forward, add & LayerNorm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .ram_swin import SwinConfig, SwinEncoder

VARIANTS = ("ram", "ram_plus")


@dataclass(frozen=True)
class HeadConfig:
    """The tagging head (upstream q2l_config.json with encoder_width 512)."""

    hidden_size: int = 768
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 3072
    norm_eps: float = 1e-12


@dataclass(frozen=True)
class RamConfig:
    variant: str  # "ram" or "ram_plus"
    num_classes: int
    descriptions_per_class: int = 1  # RAM++: 51 label-description embeddings per class
    embed_dim: int = 512  # width of image_proj / label_embed (hard-coded 512 upstream)
    swin: SwinConfig = field(default_factory=SwinConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"RAM variant {self.variant!r} unknown; valid: {', '.join(VARIANTS)}")
        if self.variant == "ram" and self.descriptions_per_class != 1:
            raise ValueError("RAM (not RAM++) has one label embedding per class")
        if self.head.hidden_size % self.head.num_heads:
            raise ValueError(f"tagging head width {self.head.hidden_size} not divisible by {self.head.num_heads} heads")

    @property
    def label_rows(self) -> int:
        return self.num_classes * self.descriptions_per_class


class _CrossAttentionCore(nn.Module):
    """BertSelfAttention as a cross-attention: Q from the queries, K/V from the image embeddings."""

    def __init__(self, cfg: HeadConfig, encoder_width: int):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(encoder_width, cfg.hidden_size)
        self.value = nn.Linear(encoder_width, cfg.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(h)), self._heads(self.key(image)), self._heads(self.value(image))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # scale after q·kᵀ, as upstream
        ctx = scores.softmax(dim=-1) @ v
        b, _, n, d = ctx.shape
        return ctx.transpose(1, 2).reshape(b, n, self.num_heads * d)


class _AddNorm(nn.Module):
    def __init__(self, cfg: HeadConfig, width_in: int):
        super().__init__()
        self.dense = nn.Linear(width_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _CrossAttention(nn.Module):
    def __init__(self, cfg: HeadConfig, encoder_width: int):
        super().__init__()
        # attribute named `self` to match the checkpoint key `crossattention.self.*`
        self.add_module("self", _CrossAttentionCore(cfg, encoder_width))
        self.output = _AddNorm(cfg, cfg.hidden_size)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.output(self._modules["self"](h, image), h)


class _Intermediate(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, transformers' "gelu"


class _HeadLayer(nn.Module):
    def __init__(self, cfg: HeadConfig, encoder_width: int):
        super().__init__()
        self.crossattention = _CrossAttention(cfg, encoder_width)
        self.intermediate = _Intermediate(cfg)
        self.output = _AddNorm(cfg, cfg.intermediate_size)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        h = self.crossattention(h, image)
        return self.output(self.intermediate(h), h)


class _LayerList(nn.Module):
    def __init__(self, cfg: HeadConfig, encoder_width: int):
        super().__init__()
        self.layer = nn.ModuleList(_HeadLayer(cfg, encoder_width) for _ in range(cfg.num_layers))


class TaggingHead(nn.Module):
    """Upstream `BertModel(q2l_config)` called with mode='tagging' after del_selfattention()."""

    def __init__(self, cfg: HeadConfig, encoder_width: int):
        super().__init__()
        self.encoder = _LayerList(cfg, encoder_width)

    def forward(self, queries: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        h = queries
        for layer in self.encoder.layer:
            h = layer(h, image_embeds)
        return h


@dataclass
class RamOutputs:
    visual_tokens: torch.Tensor  # [B, 1+L, C] Swin output
    image_embeds: torch.Tensor  # [B, 1+L, embed_dim]
    label_queries: torch.Tensor  # [1 or B, K, hidden] (RAM: image-independent, batch 1)
    tagging_embed: torch.Tensor  # [B, K, hidden]
    logits: torch.Tensor  # [B, K]
    desc_weights: torch.Tensor | None = None  # RAM++: [B, K, D] softmax over descriptions
    label_embed_reweight: torch.Tensor | None = None  # RAM++: [B, K, embed_dim]


class RamNet(nn.Module):
    def __init__(self, cfg: RamConfig):
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = SwinEncoder(cfg.swin)
        self.image_proj = nn.Linear(cfg.swin.num_features, cfg.embed_dim)
        self.label_embed = nn.Parameter(torch.zeros(cfg.label_rows, cfg.embed_dim))
        # upstream uses Identity when the head is already 512 wide (then the checkpoint has no wordvec_proj)
        self.wordvec_proj = (nn.Linear(cfg.embed_dim, cfg.head.hidden_size)
                             if cfg.head.hidden_size != cfg.embed_dim else nn.Identity())
        self.tagging_head = TaggingHead(cfg.head, cfg.embed_dim)
        self.fc = nn.Linear(cfg.head.hidden_size, 1)
        if cfg.variant == "ram_plus":
            self.reweight_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def reweight_labels(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RAM++: per image, a softmax over each class's description embeddings, weighted by their
        similarity to the pooled image embedding. Returns (weights [B, K, D], embeddings [B, K, E])."""
        k, d = self.cfg.num_classes, self.cfg.descriptions_per_class
        pooled = image_embeds[:, 0]
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        sims = (self.reweight_scale.exp() * pooled) @ self.label_embed.t()
        weights = sims.view(-1, k, d).softmax(dim=-1)
        embeds = torch.einsum("bkd,kde->bke", weights, self.label_embed.view(k, d, -1))
        return weights, embeds

    def forward(self, images: torch.Tensor) -> RamOutputs:
        visual = self.visual_encoder(images)
        image_embeds = self.image_proj(visual)
        weights = reweighted = None
        if self.cfg.variant == "ram_plus":
            weights, reweighted = self.reweight_labels(image_embeds)
            queries = F.relu(self.wordvec_proj(reweighted))
        else:
            queries = F.relu(self.wordvec_proj(self.label_embed)).unsqueeze(0)
        tagging = self.tagging_head(queries.expand(images.shape[0], -1, -1), image_embeds)
        logits = self.fc(tagging).squeeze(-1)
        return RamOutputs(visual, image_embeds, queries, tagging, logits, weights, reweighted)
