import math

import numpy as np
import pytest
import torch

from indad.data import read_image
from indad.errors import ConfigError, InputError
from indad.memory import FaissNearestNeighbors
from indad.methods import NotFittedError, PatchCore
from indad.methods.patchcore import patch_embedding, reweighting_weights
from tests.helpers import make_layout


def slow_reweighted_score(queries: np.ndarray, bank: np.ndarray, b: int) -> float:
    """Eq. 7 of Roth et al. 2021 for one image, with brute-force distances."""
    dists = np.sqrt(((queries[:, None, :] - bank[None, :, :]) ** 2).sum(-1))  # (P, M)
    nearest = dists.min(axis=1)
    p = int(np.argmax(nearest))
    s_star = nearest[p]
    m_star = int(np.argmin(dists[p]))
    support = np.argsort(np.sqrt(((bank - bank[m_star]) ** 2).sum(-1)), kind="stable")[:b]
    denom = sum(math.exp(dists[p, j]) for j in support)
    return (1 - math.exp(s_star) / denom) * s_star


def test_reweighting_matches_equation_7():
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(60, 5, generator=gen)
    queries = torch.randn(3, 20, 5, generator=gen)
    searcher = FaissNearestNeighbors().fit(bank)
    d, i = searcher.search(queries.reshape(-1, 5), 1)
    s_star = d.view(3, 20).max(dim=1).values
    for b in (1, 3, 9):
        ours = reweighting_weights(queries, d.view(3, 20), i.view(3, 20), bank, searcher, b) * s_star
        ref = [slow_reweighted_score(q.double().numpy(), bank.double().numpy(), b) for q in queries]
        assert np.allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(reweighting_weights(queries, d.view(3, 20), i.view(3, 20), bank, searcher, 0), torch.ones(3))


def test_patch_embedding_shapes_and_local_average():
    f1 = torch.zeros(1, 2, 8, 8)
    f1[0, 0, 4, 4] = 9.0
    f2 = torch.ones(1, 3, 4, 4)
    emb = patch_embedding([f1, f2])
    assert emb.shape == (1, 5, 8, 8)
    assert emb[0, 0, 3:6, 3:6].eq(1.0).all() and emb[0, 0, 0, 0] == 0  # 3x3 mean spreads the peak
    assert torch.allclose(emb[0, 2:, 3:5, 3:5], torch.ones(3, 2, 2))
    assert torch.allclose(emb[0, 2:, 0, 0], torch.full((3,), 4 / 9))  # zero padding at the corners


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = make_layout(tmp_path_factory.mktemp("tiny") / "ds", n_train=6, size=(64, 64))
    model = PatchCore(image_size=64, f_coreset=0.25, batch_size=4, progress=False).fit(root)
    return model, root


def test_scores_do_not_depend_on_the_batch(fitted):
    model, root = fitted
    one = model.predict(root, batch_size=1)
    many = model.predict(root, batch_size=5)
    assert one.paths == many.paths and len(one) == 4
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-5)
    np.testing.assert_allclose(one.maps, many.maps, rtol=1e-4, atol=1e-4)


def test_predict_outputs(fitted):
    model, root = fitted
    pred = model.predict(sorted((root / "test" / "good").iterdir()))
    assert pred.scores.shape == (2,) and pred.maps.shape == (2, 64, 64) and pred.maps.dtype == np.float32
    assert np.all(np.isfinite(pred.scores))
    # A training image is (nearly) in the memory bank: lower score than random noise images.
    train_score = model.predict(sorted((root / "train" / "good").iterdir())[:1]).scores[0]
    assert train_score < pred.scores.min()


def test_same_seed_same_model(fitted):
    model, root = fitted
    again = PatchCore(image_size=64, f_coreset=0.25, batch_size=2, progress=False).fit(root)
    assert torch.equal(model.memory_bank, again.memory_bank)


def test_image_score_modes(fitted):
    model, root = fitted
    maps_mode = model.predict(root)
    model.module.image_score = "max_patch"
    try:
        patch_mode = model.predict(root)
    finally:
        model.module.image_score = "max_map"
    np.testing.assert_allclose(maps_mode.scores, maps_mode.maps.max(axis=(1, 2)), rtol=1e-6)
    assert not np.allclose(patch_mode.scores, maps_mode.scores)
    np.testing.assert_array_equal(patch_mode.maps, maps_mode.maps)


def test_unfitted_and_bad_parameters():
    with pytest.raises(InputError, match=r"f_coreset must be in \(0, 1\]"):
        PatchCore(f_coreset=1.5)
    with pytest.raises(InputError, match="image_score must be one of"):
        PatchCore(image_score="mean")
    with pytest.raises(ConfigError, match="image_size"):
        PatchCore(image_size=8)
    with pytest.raises(NotFittedError):
        PatchCore().predict([np.zeros((32, 32, 3), np.uint8)])


def test_hparams_round_trip():
    model = PatchCore(f_coreset=0.05, image_size=(96, 128), progress=False)
    params = model.hparams()
    assert params["f_coreset"] == 0.05 and params["image_size"] == [96, 128] and params["strides"] == [8, 16]
    assert PatchCore(**params).hparams() == params


def test_end_to_end_hazelnut(hazelnut):
    model = PatchCore(progress=False).fit(hazelnut)
    result = model.evaluate(hazelnut)
    assert result["image_auroc"] >= 0.9
    assert result["pixel_auroc"] >= 0.95
    assert result["aupro"] >= 0.8
    assert result["n_images"] == 10 and result["n_pixel_images"] == 10


def test_tensor_input_and_unlabelled_evaluate(fitted):
    model, root = fitted
    x = torch.zeros(3, 3, 64, 64)
    pred = model.predict(x, batch_size=2)
    assert pred.paths == ["<tensor 0>", "<tensor 1>", "<tensor 2>"] and pred.maps.shape == (3, 64, 64)
    assert np.allclose(pred.scores, pred.scores[0])  # three equal images, equal scores, across batches
    # A tensor of normalised images scores as the files they came from.
    paths = sorted((root / "test" / "good").iterdir())
    images = torch.stack([model.preprocess.image(read_image(p)) for p in paths])
    np.testing.assert_allclose(model.predict(images).scores, model.predict(paths).scores, rtol=1e-5)
    with pytest.raises(InputError, match="labelled data"):
        model.evaluate(root / "test" / "good")


def test_scoring_settings_round_trip_and_are_refused_when_unknown(tmp_path):
    model = PatchCore(backbone_runtime="torch", fit_runtime="onnxruntime", search="exact", ef_search=32, progress=False)
    params = model.hparams()
    assert (params["backbone_runtime"], params["search"], params["ef_search"]) == ("torch", "exact", 32)
    assert params["fit_runtime"] == "onnxruntime" and PatchCore().fit_runtime == "torch"
    assert PatchCore(**params).hparams() == params
    for bad in ({"backbone_runtime": "tensorrt"}, {"fit_runtime": "tvm"}, {"search": "ivf"}, {"ef_search": 0}):
        with pytest.raises(InputError, match=next(iter(bad))):
            PatchCore(**bad)


def test_fast_and_exact_scoring_agree_and_survive_save_and_load(fitted, tmp_path):
    """ONNX Runtime + HNSW (the default) against torch + exact search on one bank; a saved model scores the same."""
    import indad
    from indad.memory import HnswNearestNeighbors

    model, root = fitted
    assert (model.backbone_runtime, model.search) == ("onnxruntime", "hnsw")
    assert model.module.runtime == "onnxruntime"  # the fit ran torch (fit_runtime), scoring runs ONNX Runtime
    assert isinstance(model.build_module().searcher, HnswNearestNeighbors)
    fast = model.predict(root)
    exact = indad.load(model.save(tmp_path / "m.indad"), device="cpu")
    exact.backbone_runtime, exact.search = "torch", "exact"
    exact.rebuild()
    ref = exact.predict(root)
    assert isinstance(exact.module.searcher, FaissNearestNeighbors)
    assert np.allclose(fast.scores, ref.scores, rtol=1e-3, atol=1e-4)
    assert np.allclose(fast.maps, ref.maps, rtol=1e-3, atol=1e-4)
    loaded = indad.load(tmp_path / "m.indad", device="cpu")
    assert loaded.hparams() == model.hparams()
    assert loaded.module.searcher.from_graph  # the saved HNSW graph, not a new one
    again = loaded.predict(root)
    assert np.array_equal(again.scores, fast.scores) and np.array_equal(again.maps, fast.maps)


def test_coreset_subsample_keeps_the_bank_size(fitted):
    model, root = fitted
    sub = PatchCore(image_size=64, f_coreset=0.25, batch_size=4, coreset_subsample=0.5, progress=False).fit(root)
    assert sub.memory_bank.shape == model.memory_bank.shape
    assert not torch.equal(sub.memory_bank, model.memory_bank)
    assert sub.hparams()["coreset_subsample"] == 0.5
    with pytest.raises(InputError, match="coreset_subsample"):
        PatchCore(coreset_subsample=0)
