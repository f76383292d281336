"""Contract checks for method adapters, for use in any adapter author's own tests.

    from zsasbench.testing import check_method
    def test_my_method():
        check_method("my-method")            # by registry name
        check_method(MyMethod(MyMethod.Config()))  # or an instance
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .datasets.base import Sample
from .methods import create_method
from .methods.base import Method, PrepareContext
from .models.base import Runtime


def contract_images(seed: int = 0) -> list[np.ndarray]:
    """Small test images of different, non-square sizes (a bright blob on a textured background)."""
    rng = np.random.default_rng(seed)
    images = []
    for h, w in ((48, 64), (70, 52), (64, 64)):
        base = rng.normal(128, 12, size=(h, w)).clip(0, 255)
        yy, xx = np.mgrid[:h, :w]
        blob = ((yy - h * 0.4) ** 2 + (xx - w * 0.6) ** 2) < (min(h, w) * 0.12) ** 2
        base[blob] = 230
        images.append(np.repeat(base.astype(np.uint8)[..., None], 3, axis=2))
    return images


def contract_context(seed: int = 111, cache_dir: Path | None = None, kind: str = "object",
                     object_name: str = "metal plate") -> PrepareContext:
    refs = [Sample.from_arrays(f"ref/{i}.png", "contract", img, label=0)
            for i, img in enumerate(contract_images(seed + 1))]
    return PrepareContext(category="contract", kind=kind, object_name=object_name, seed=seed,
                          rng=np.random.default_rng(seed), reference_samples=lambda: refs,
                          cache_dir=cache_dir, dataset="contract")


def _run(method: Method, images: Sequence[np.ndarray], seed: int, kind: str, cache_dir: Path | None):
    method.prepare(contract_context(seed=seed, cache_dir=cache_dir, kind=kind))
    return method.predict(list(images))


def check_method(method_or_name: Method | str, runtime: Runtime | None = None, seed: int = 111,
                 kinds: Sequence[str] = ("object", "texture"), cache_dir: Path | None = None) -> list[np.ndarray]:
    """Assert the adapter keeps the method contract; returns the maps of the first run.

    Checks: one map per image, each float32 with the image's (H, W), finite values, the same output
    twice under the same seed, and that prepare() may be called again for a new category.
    """
    runtime = runtime or Runtime(profile="tiny-random")
    method = create_method(method_or_name, runtime=runtime) if isinstance(method_or_name, str) else method_or_name
    name = method.name or type(method).__name__
    assert method.name, f"{type(method).__name__}: set the class attribute `name`"
    assert hasattr(method.config, "__dataclass_fields__"), f"{name}: config must be a dataclass"
    method.config_hash_source()  # every config value must be serialisable for logging and caching
    specs = method.required_models()
    assert isinstance(specs, list), f"{name}: required_models() must return a list of ModelSpec"

    images = contract_images(seed)
    first = None
    for kind in kinds:
        maps = _run(method, images, seed, kind, cache_dir)
        assert isinstance(maps, list), f"{name}: predict must return a list, got {type(maps).__name__}"
        assert len(maps) == len(images), f"{name}: {len(images)} images in, {len(maps)} maps out"
        for i, (img, m) in enumerate(zip(images, maps)):
            assert isinstance(m, np.ndarray), f"{name}: map {i} is {type(m).__name__}, not a numpy array"
            assert m.dtype == np.float32, f"{name}: map {i} dtype {m.dtype}, expected float32"
            assert m.shape == img.shape[:2], f"{name}: map {i} shape {m.shape}, image is {img.shape[:2]} (H, W)"
            assert np.isfinite(m).all(), f"{name}: map {i} has NaN or inf values"
        again = _run(method, images, seed, kind, cache_dir)
        for i, (a, b) in enumerate(zip(maps, again)):
            assert np.array_equal(a, b), f"{name}: map {i} differs between two runs with seed {seed} ({kind})"
        if first is None:
            first = maps
    single = method.predict([images[1]])
    assert len(single) == 1 and single[0].shape == images[1].shape[:2], f"{name}: predict on one image failed"
    return first
