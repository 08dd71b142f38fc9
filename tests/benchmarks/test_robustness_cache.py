"""benchmarks/robustness.py's feature cache: the same features as the backbone's own forward pass, computed once."""

from __future__ import annotations

import importlib.util

import torch

from indad.backbones import Backbone
from tests.helpers import REPO


def _benchmark():  # the benchmark is a script, not a package: loaded from its file
    spec = importlib.util.spec_from_file_location("robustness_benchmark", REPO / "benchmarks" / "robustness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_feature_cache_gives_the_backbones_features_once_per_image() -> None:
    bench = _benchmark()
    backbone = Backbone("tf_efficientnet_lite0", (8, 16))
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    want = backbone(images, "torch")
    cache = bench.FeatureCache()
    cache.install()
    try:
        first = backbone(images, "torch")
        again = backbone(torch.stack([images[2], images[0], images[2]]), "torch")
        assert (cache.misses, cache.hits) == (3, 3)
        for w, f, a in zip(want, first, again, strict=True):
            torch.testing.assert_close(f, w, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(a, torch.stack([f[2], f[0], f[2]]))
        mark = cache.mark()
        backbone(images + 1, "torch")
        assert len(cache.store) == mark + 3
        cache.forget_since(mark)
        assert len(cache.store) == mark
    finally:
        cache.uninstall()
    assert Backbone.forward is not None and cache.store  # the class has its own forward pass again
    assert backbone(images[:1], "torch")[0].shape == want[0][:1].shape and cache.hits == 3
