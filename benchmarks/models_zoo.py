"""Timings of the model-zoo families (tiny-random profiles, and the embedded SmolLM2 with --smollm2).

    python benchmarks/models_zoo.py [--smollm2]

Prints one line per step: build/load seconds and per-call seconds. Targets (2-core CPU, idle machine):
tiny-random builds under 2 s and calls under 1 s; SmolLM2 first load (GGUF) ~16 s, cached reload < 3 s,
an answer of 24 tokens ~1 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(label, fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    print(f"{label:45s} {(time.perf_counter() - start) / repeat:8.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm2", action="store_true", help="also time the real embedded SmolLM2")
    args = parser.parse_args()
    from zsasbench.models import Runtime, load
    from zsasbench.models.grounding_dino import GROUNDING_DINO_TINY
    from zsasbench.models.llm import LLAMA3_8B_INSTRUCT, SMOLLM2_EMBEDDED
    from zsasbench.models.llm import load as load_llm
    from zsasbench.models.sam import SAM_VIT_H
    from zsasbench.models.timm_backbone import WIDE_RESNET50

    tiny = Runtime(profile="tiny-random")
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    gd = timed("grounding-dino tiny-random build", lambda: load(GROUNDING_DINO_TINY, tiny))
    det = timed("grounding-dino tiny-random detect 512px", lambda: gd.detect(image, "crack . screw", 0.2, 0.2), 3)
    sam = timed("sam tiny-random build", lambda: load(SAM_VIT_H, tiny))
    timed(f"sam tiny-random segment {len(det)} boxes", lambda: sam.segment_boxes(image, det.boxes), 3)
    timed("timm wide_resnet50_2 tiny-random build", lambda: load(WIDE_RESNET50, tiny))
    llm = timed("llm tiny-random build", lambda: load(LLAMA3_8B_INSTRUCT, tiny))
    msgs = [{"role": "user", "content": "List anomalies of a metal screw."}]
    timed("llm tiny-random chat 24 tokens", lambda: llm.chat(msgs, max_new_tokens=24), 3)
    if args.smollm2:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["ZSAS_CACHE_DIR"] = cache
            smol = timed("smollm2 load from GGUF (first time)", lambda: load_llm(SMOLLM2_EMBEDDED, Runtime()))
            timed("smollm2 chat 24 tokens", lambda: smol.chat(msgs, max_new_tokens=24), 3)
            timed("smollm2 load from converted cache", lambda: load_llm(SMOLLM2_EMBEDDED, Runtime()))


if __name__ == "__main__":
    main()
