"""Figures logged with each category: the PR curve and a qualitative grid (as the IAP-AS paper's Fig. 3)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .protocol import resize_map, resize_mask


def heat_overlay(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Jet-coloured map (expects [0, 1]) blended over the image; uint8 HxWx3."""
    from matplotlib import colormaps

    m = resize_map(anomaly_map, image.shape[:2])
    colour = (colormaps["jet"](np.clip(m, 0, 1))[..., :3] * 255).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colour * alpha).round().astype(np.uint8)


def save_pr_curve(precision: np.ndarray, recall: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.plot(recall, precision, lw=1.5)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_qualitative_grid(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                          maps: Sequence[np.ndarray], path: Path, tile: int = 160) -> None:
    """Rows of image | ground truth | anomaly-map overlay (maps already normalised to [0, 1])."""
    rows = []
    for image, mask, amap in zip(images, masks, maps):
        img = np.asarray(Image.fromarray(image).resize((tile, tile), Image.BILINEAR))
        gt = resize_mask(mask, (tile, tile))
        gt_rgb = np.repeat((gt * 255).astype(np.uint8)[..., None], 3, axis=2)
        over = heat_overlay(img, resize_map(amap, (tile, tile)))
        sep = np.full((tile, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([img, sep, gt_rgb, sep, over], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    if rows:
        Image.fromarray(np.concatenate(rows[:-1], axis=0)).save(path)
