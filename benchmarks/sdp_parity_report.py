"""Print SDP's maximum absolute error against every array of the parity fixture (../shared/fixtures/sdp).

    .venv/bin/python benchmarks/sdp_parity_report.py [--no-quirk]

--no-quirk runs with class_token_after_next_attention=False, to see what the reference's quirk moves.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = Path(os.environ.get("ZSAS_SHARED", REPO.parent / "shared")) / "fixtures"

BOUNDS = {"batch": 1e-5, "text_features": 1e-6, "dbscan_probe_text_features": 1e-6, "surgery_features": 1e-6,
          "similarity": 1e-6, "anomaly_maps_raw": 5e-7, "anomaly_maps": 5e-7, "image_scores_map_max": 5e-7,
          "image_scores_text": 1e-5}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-quirk", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(FIXTURES))
    import detweights
    import open_clip
    from PIL import Image

    from zsasbench.methods.sdp import SDP, SDPConfig
    from zsasbench.methods.sdp_text import representative_vector
    from zsasbench.methods.sdp_vision import preprocess
    from zsasbench.testing import contract_context

    folder = FIXTURES / "sdp"
    exp = dict(np.load(folder / "expected.npz"))
    start = time.time()
    model = open_clip.create_model("ViT-B-16-plus-240", pretrained=None)
    model.load_state_dict(detweights.state_dict(str(FIXTURES / "clip_vit_b16_plus_240" / "manifest.json")),
                          strict=True)
    images = [np.asarray(Image.open(folder / f"input_{i}.png").convert("RGB")) for i in range(2)]
    method = SDP(SDPConfig(class_token_after_next_attention=not args.no_quirk))
    method.attach_model(model, open_clip.get_tokenizer("ViT-B-16-plus-240"))
    method.keep_intermediates = True
    method.prepare(contract_context(object_name="tile"))
    method.predict(images)
    res, text = method.last_result, method._text
    probe = np.stack([representative_vector(exp[f"dbscan_probe_{s}_inputs"], "dbscan", 0.5, 15).vector
                      for s in ("normal", "anomalous")], axis=1)
    ours = {
        "batch": preprocess(images, 240).numpy(),
        "normal_prompt_embeddings": text.embeddings[0], "anomalous_prompt_embeddings": text.embeddings[1],
        "text_features": text.features, "dbscan_probe_text_features": probe,
        "surgery_features": res.surgery_features, "per_layer_similarity": res.per_layer_similarity,
        "similarity": res.similarity, "anomaly_maps_raw": res.anomaly_maps_raw, "anomaly_maps": res.anomaly_maps,
        "image_probs": res.image_probs, "image_scores_text": method.last_image_scores,
        "image_scores_map_max": method.last_image_scores_map_max,
    }
    same = {"prompts": text.prompts[0] == list(exp["normal_prompts"]) and text.prompts[1] == list(exp["anomalous_prompts"]),
            "dbscan labels": all(np.array_equal(r.labels, exp[f"{s}_dbscan_labels"])
                                 for r, s in zip(text.reps, ("normal", "anomalous")))}
    failed = False
    print(f"{'array':30s} {'max abs error':>14s} {'bound':>8s}")
    for key, value in ours.items():
        err = float(np.abs(np.asarray(value, np.float64) - exp[key].astype(np.float64)).max())
        bound = BOUNDS.get(key)
        flag = "" if bound is None or err <= bound else "  FAIL"
        failed |= bool(flag)
        print(f"{key:30s} {err:14.3e} {bound if bound else '':>8}{flag}")
    for key, ok in same.items():
        failed |= not ok
        print(f"{key:30s} {'identical' if ok else 'DIFFERENT':>14s}")
    print(f"({time.time() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
