"""Swin Transformer image encoder of RAM / RAM++ (as configured in xinyu1205/recognize-anything).

Module and parameter names follow the official checkpoints' `visual_encoder.*` keys, so an official
state dict loads by name. The two derived buffers (`relative_position_index`, `attn_mask`) are computed
here and are not part of the state dict (the official loader discards them from checkpoints anyway).

Output of `SwinEncoder.forward`: [B, 1 + L, C], the mean of the L final-normalised grid tokens first, then
the tokens of the last stage's grid in row-major order (what RAM's `image_proj` consumes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SwinConfig:
    image_size: int = 384
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    shift_mask_value: float = -100.0  # upstream masks cross-region pairs with -100, not -inf

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def stage_grid(self, stage: int) -> int:
        return self.image_size // self.patch_size // 2 ** stage

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"Swin image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"Swin depths {self.depths} and num_heads {self.num_heads} differ in length")
        for stage, heads in enumerate(self.num_heads):
            grid, dim = self.stage_grid(stage), self.embed_dim * 2 ** stage
            window = min(self.window_size, grid)
            if grid % window or (stage < len(self.depths) - 1 and grid % 2):
                raise ValueError(f"Swin stage {stage}: grid {grid} does not tile into windows of {window} "
                                 f"or cannot be merged 2x2")
            if dim % heads:
                raise ValueError(f"Swin stage {stage}: width {dim} is not divisible by {heads} heads")


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] int64, N = window²: row of the bias table for (query i, key j), (Δh+w-1)·(2w-1) + (Δw+w-1)."""
    ys, xs = torch.meshgrid(torch.arange(window, device="cpu"), torch.arange(window, device="cpu"), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dh = ys[:, None] - ys[None, :] + window - 1
    dw = xs[:, None] - xs[None, :] + window - 1
    return dh * (2 * window - 1) + dw


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B·nWh·nWw, window, window, C], windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of window_partition: [B·nW, window, window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((height // window) * (width // window))
    x = windows.view(b, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)


def shift_attention_mask(height: int, width: int, window: int, shift: int, value: float) -> torch.Tensor:
    """[nW, N, N] additive mask for shifted windows: `value` between tokens that came from different
    regions of the rolled grid (they are not neighbours in the image), 0 otherwise."""

    def region(n: int) -> torch.Tensor:  # 0: untouched part, 1: last window before the wrap, 2: wrapped part
        idx = torch.arange(n, device="cpu")
        return (idx >= n - window).long() + (idx >= n - shift).long()

    labels = region(height)[:, None] * 3 + region(width)[None, :]
    per_window = window_partition(labels[None, :, :, None], window).reshape(-1, window * window)
    differs = per_window[:, :, None] != per_window[:, None, :]
    return torch.zeros(differs.shape, dtype=torch.float32, device="cpu").masked_fill(differs, value)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.window, self.num_heads = window, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]  # scale q before q·kᵀ, as upstream
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = q @ k.transpose(-2, -1) + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(bw, self.num_heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class SwinBlock(nn.Module):
    def __init__(self, cfg: SwinConfig, dim: int, grid: int, num_heads: int, shifted: bool):
        super().__init__()
        self.grid = grid
        # A grid no larger than the window is one window: no shift (upstream rule).
        self.window = min(cfg.window_size, grid)
        self.shift = cfg.window_size // 2 if shifted and grid > cfg.window_size else 0
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = WindowAttention(dim, self.window, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        mask = (shift_attention_mask(grid, grid, self.window, self.shift, cfg.shift_mask_value)
                if self.shift else None)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        h = self.norm1(x).view(b, self.grid, self.grid, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(h, self.window).view(-1, self.window * self.window, c)
        windows = self.attn(windows, self.attn_mask).view(-1, self.window, self.window, c)
        h = window_merge(windows, self.window, self.grid, self.grid)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, length, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, cfg: SwinConfig, dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.grid, self.grid, c)
        # channel order (row, col): (0,0), (1,0), (0,1), (1,1) — the checkpoint's reduction weights depend on it
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, cfg: SwinConfig, stage: int):
        super().__init__()
        dim, grid = cfg.embed_dim * 2 ** stage, cfg.stage_grid(stage)
        self.blocks = nn.ModuleList(
            SwinBlock(cfg, dim, grid, cfg.num_heads[stage], shifted=i % 2 == 1) for i in range(cfg.depths[stage]))
        self.downsample = PatchMerging(cfg, dim, grid) if stage < len(cfg.depths) - 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class SwinEncoder(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.layers = nn.ModuleList(SwinStage(cfg, s) for s in range(len(cfg.depths)))
        self.norm = nn.LayerNorm(cfg.num_features, eps=cfg.norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"Swin encoder expects {size}x{size} inputs, got {tuple(images.shape[-2:])}")
        x = self.patch_embed(images)
        for stage in self.layers:
            x = stage(x)
        x = self.norm(x)
        return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
