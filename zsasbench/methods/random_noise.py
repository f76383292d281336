"""`random`: uniform noise maps, the floor every method must beat."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .base import Method, MethodConfig, PrepareContext


@dataclass
class RandomNoiseConfig(MethodConfig):
    low: float = 0.0
    high: float = 1.0


class RandomNoise(Method):
    name = "random"
    display_name = "Random"
    Config = RandomNoiseConfig
    description = "Uniform noise maps (chance level; no weights)."

    def prepare(self, context: PrepareContext) -> None:
        self._seed = context.seed
        self._category = context.category

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        maps = []
        for image in images:
            # Seeded by the image content, so a map does not depend on batch order or on resume.
            key = zlib.crc32(np.ascontiguousarray(image).tobytes()) ^ self._seed
            rng = np.random.default_rng(key)
            maps.append(rng.uniform(self.config.low, self.config.high, size=image.shape[:2]).astype(np.float32))
        return maps
