"""The `evf-sam` method adapter: contract, config, and the map it computes (tiny-random weights)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from zsasbench.errors import UserError
from zsasbench.methods import create_method, method_class
from zsasbench.methods.base import config_from_overrides
from zsasbench.methods.evf_sam import EVFSAM, EVFSAMConfig
from zsasbench.models import Runtime, load
from zsasbench.models.evf_sam import EVF_SAM
from zsasbench.testing import check_method, contract_context, contract_images

TINY = Runtime(profile="tiny-random")


def test_registry_and_names():
    assert method_class("evf-sam") is EVFSAM
    assert EVFSAM.display_name == "EVF-SAM"
    method = create_method("evf-sam", runtime=TINY)
    assert method.config.prompts == ("abnormal", "defect")
    (spec,) = method.required_models()
    assert (spec.family, spec.source, spec.revision) == ("evf-sam", EVF_SAM.source, EVF_SAM.revision)


def test_check_method_contract_tiny_random():
    maps = check_method("evf-sam", runtime=TINY)
    for m in maps:
        assert m.min() >= 0.0 and m.max() <= 1.0  # probabilities


def test_map_is_max_of_per_prompt_sigmoids():
    method = EVFSAM(EVFSAMConfig(prompts=("abnormal", "defect", "scratch")), runtime=TINY)
    method.prepare(contract_context())
    image = contract_images()[1]
    (got,) = method.predict([image])
    logits = load(EVF_SAM, TINY).segment(image, ["abnormal", "defect", "scratch"]).logits
    np.testing.assert_allclose(got, expit(logits.astype(np.float64)).max(axis=0), rtol=0, atol=1e-7)
    mean = EVFSAM(EVFSAMConfig(prompts=("abnormal", "defect", "scratch"), combine="mean"), runtime=TINY)
    (got_mean,) = mean.predict([image])
    np.testing.assert_allclose(got_mean, expit(logits.astype(np.float64)).mean(axis=0), rtol=0, atol=1e-7)
    assert not np.allclose(got, got_mean)


def test_config_from_cli_overrides():
    cfg = config_from_overrides(EVFSAMConfig, {"prompts": "defect,crack", "combine": "mean"})
    assert cfg.prompts == ("defect", "crack") and cfg.combine == "mean"
    with pytest.raises(UserError, match="combine"):
        EVFSAM(EVFSAMConfig(combine="sum"), runtime=TINY)
    with pytest.raises(UserError, match="prompts"):
        EVFSAM(EVFSAMConfig(prompts=()), runtime=TINY)
    with pytest.raises(UserError, match="prompts"):
        EVFSAM(EVFSAMConfig(prompts=("defect", " ")), runtime=TINY)


def test_local_checkpoint_through_the_method(tmp_path):
    from zsasbench.models.evf_sam import build_tiny, save_checkpoint

    folder = save_checkpoint(build_tiny(seed=0), tmp_path / "evf")
    method = EVFSAM(EVFSAMConfig(model=str(folder), model_revision=""), runtime=Runtime())
    assert method.required_models()[0].source == str(folder)
    method.prepare(contract_context())
    images = contract_images()
    tiny = EVFSAM(EVFSAMConfig(), runtime=TINY)
    for a, b in zip(method.predict(images), tiny.predict(images), strict=True):
        np.testing.assert_array_equal(a, b)
