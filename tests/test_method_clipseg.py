"""CLIPSeg adapter: contract on a tiny random CLIPSeg, prompt combination and config validation."""
from __future__ import annotations

import numpy as np
import pytest

from zsasbench.errors import UserError
from zsasbench.methods import create_method
from zsasbench.methods.clipseg import CLIPSeg, CLIPSegConfig, combine_maps, sigmoid
from zsasbench.models import Runtime, load
from zsasbench.models.clipseg import CLIPSEG_RD64_REFINED
from zsasbench.testing import check_method, contract_context, contract_images

TINY = Runtime(profile="tiny-random")


def test_clipseg_contract_tiny():
    maps = check_method("clipseg", runtime=TINY)
    assert all(m.min() >= 0 and m.max() <= 1 for m in maps)  # probabilities


def test_clipseg_defaults_follow_the_paper_comparison():
    method = create_method("clipseg", runtime=TINY)
    assert method.config.prompts == ["abnormal", "defect"] and method.config.combine == "max"
    [spec] = method.required_models()
    assert spec.source == "CIDAS/clipseg-rd64-refined" and spec.revision == CLIPSEG_RD64_REFINED.revision
    assert len(spec.revision) == 40


def test_clipseg_map_is_combined_sigmoid_resized():
    images = contract_images(0)
    seg = load(CLIPSEG_RD64_REFINED, TINY)
    logits = seg.segment(images, ["abnormal", "defect"])
    for how in ("max", "mean"):
        method = CLIPSeg(CLIPSegConfig(combine=how), runtime=TINY)
        method.prepare(contract_context())
        maps = method.predict(images)
        for img, lg, m in zip(images, logits, maps):
            expected = combine_maps(sigmoid(lg), how)
            assert m.shape == img.shape[:2]
            # a bilinear resize keeps values within the range of its source
            assert expected.min() - 1e-6 <= m.min() and m.max() <= expected.max() + 1e-6
            # the image centre samples the source map's centre region
            h, w = img.shape[:2]
            ch, cw = expected.shape
            near = expected[int(ch * 0.45):int(ch * 0.55), int(cw * 0.45):int(cw * 0.55)]
            assert near.min() - 1e-6 <= m[h // 2, w // 2] <= near.max() + 1e-6


def test_combine_and_sigmoid():
    probs = np.array([[[0.1, 0.9]], [[0.5, 0.2]]], np.float32)
    np.testing.assert_allclose(combine_maps(probs, "max"), [[0.5, 0.9]])
    np.testing.assert_allclose(combine_maps(probs, "mean"), [[0.3, 0.55]])
    with pytest.raises(UserError):
        combine_maps(probs, "median")
    s = sigmoid(np.array([-1000.0, 0.0, 1000.0], np.float32))  # no overflow warnings, exact limits
    np.testing.assert_allclose(s, [0.0, 0.5, 1.0])


def test_clipseg_config_errors_and_overrides():
    with pytest.raises(UserError, match="combine"):
        CLIPSeg(CLIPSegConfig(combine="median"), runtime=TINY)
    with pytest.raises(UserError, match="prompts"):
        CLIPSeg(CLIPSegConfig(prompts=[]), runtime=TINY)
    method = create_method("clipseg", {"prompts": "crack,scratch", "combine": "mean"}, runtime=TINY)
    assert method.config.prompts == ["crack", "scratch"] and method.config.combine == "mean"
