"""Dataset registry: `load_dataset(name, root)` for the seven benchmarks and the built-ins."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UserError
from .base import CategoryCounts, Dataset, Sample

# name -> "module:Class", imported on first use.
DATASETS: dict[str, str] = {
    "mvtec": "zsasbench.datasets.mvtec:MVTecAD",
    "mpdd": "zsasbench.datasets.mpdd:MPDD",
    "btad": "zsasbench.datasets.btad:BTAD",
    "ksdd": "zsasbench.datasets.ksdd:KolektorSDD",
    "mtd": "zsasbench.datasets.mtd:MagneticTile",
    "dtd-synthetic": "zsasbench.datasets.dtd_synthetic:DTDSynthetic",
    "dagm": "zsasbench.datasets.dagm:DAGM2007",
    "synthetic": "zsasbench.datasets.synthetic:SyntheticDataset",
    "folder": "zsasbench.datasets.folder:FolderDataset",
}

# Folder names looked for under --data-root, per dataset.
DEFAULT_FOLDERS: dict[str, tuple[str, ...]] = {
    "mvtec": ("mvtec", "mvtec_ad", "mvtec_anomaly_detection", "MVTec-AD"),
    "mpdd": ("mpdd", "MPDD"),
    "btad": ("btad", "BTAD", "BTech_Dataset_transformed"),
    "ksdd": ("ksdd", "KolektorSDD", "kolektorsdd"),
    "mtd": ("mtd", "MTD", "Magnetic-Tile-Defect", "magnetic_tile"),
    "dtd-synthetic": ("dtd-synthetic", "DTD-Synthetic", "dtd_synthetic"),
    "dagm": ("dagm", "DAGM", "DAGM2007"),
    "synthetic": ("synthetic",),
}


def dataset_class(name: str) -> type[Dataset]:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_dataset(name: str, root: str | Path) -> Dataset:
    """Open dataset `name` at `root` (no image is decoded here)."""
    return dataset_class(name)(root)


def candidate_roots(name: str, data_root: str | Path) -> list[Path]:
    return [Path(data_root) / folder for folder in DEFAULT_FOLDERS.get(name, (name,))]


__all__ = ["CategoryCounts", "DATASETS", "Dataset", "Sample", "candidate_roots", "dataset_class", "load_dataset"]
