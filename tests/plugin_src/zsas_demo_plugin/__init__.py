"""A third-party method package, as a user would write one (used by the harness tests).

`counting` logs a hash of every image it predicts to $ZSAS_DEMO_LOG and can sleep per image (so a
test can kill a run mid-category) or fail on one category (fault isolation).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from zsasbench.methods.base import Method, MethodConfig


@dataclass
class CountingConfig(MethodConfig):
    sleep: float = 0.0
    fail_on_category: str = ""


class CountingMethod(Method):
    name = "counting"
    display_name = "Counting"
    Config = CountingConfig
    description = "Test plugin: brightness map, logs every prediction."

    def prepare(self, context):
        if context.category == self.config.fail_on_category:
            raise RuntimeError(f"deliberate failure on {context.category}")
        self._category = context.category

    def predict(self, images):
        maps = []
        for image in images:
            time.sleep(self.config.sleep)
            maps.append(image.astype(np.float32).mean(axis=2) / 255.0)
            log = os.environ.get("ZSAS_DEMO_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(f"{self._category} {hashlib.sha1(image.tobytes()).hexdigest()}\n")
        return maps
