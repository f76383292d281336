"""Print the max absolute error of every array of the WinCLIP parity fixture (../shared/fixtures/winclip).

    .venv/bin/python benchmarks/winclip_parity_errors.py [--shared ../shared]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zsasbench.methods.winclip import WinCLIP, WinCLIPConfig, prompt_ensemble  # noqa: E402
from zsasbench.models import Runtime  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args()
    fixtures = args.shared / "fixtures"
    sys.path.insert(0, str(fixtures))
    import detweights

    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "vit_b16_plus_240_det.pt"
        torch.save(detweights.state_dict(str(fixtures / "clip_vit_b16_plus_240" / "manifest.json")), ckpt)
        method = WinCLIP(WinCLIPConfig(weights=str(ckpt)), runtime=Runtime())
        method.keep_outputs = True
        method.set_class_name("tile")
        images = [np.asarray(Image.open(fixtures / "winclip" / f"input_{i}.png").convert("RGB")) for i in range(2)]
        method.predict(images)
    out = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in method.last_outputs.items()}
    normal, anomalous = prompt_ensemble("tile")
    out["normal_prompts"], out["anomalous_prompts"] = np.array(normal), np.array(anomalous)
    out["normal_prompt_tokens"] = method.clip.tokenize(normal).cpu().numpy()
    out["anomalous_prompt_tokens"] = method.clip.tokenize(anomalous).cpu().numpy()
    with torch.no_grad():
        out["normal_prompt_embeddings"] = method.clip.encode_text(normal).numpy()
        out["anomalous_prompt_embeddings"] = method.clip.encode_text(anomalous).numpy()
    expected = np.load(fixtures / "winclip" / "expected.npz")
    for key in expected.files:
        if key not in out:
            print(f"{key:32s} (not produced)")
        elif expected[key].dtype.kind in "UO":
            print(f"{key:32s} {'identical' if out[key].tolist() == expected[key].tolist() else 'DIFFERENT'}")
        else:
            err = np.abs(np.asarray(out[key], np.float64) - expected[key].astype(np.float64)).max()
            print(f"{key:32s} {err:.2e}")
    print(f"({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
