import numpy as np
import pytest
import torch

from indad.errors import InputError
from indad.methods.anomaly_map import AnomalyMapGenerator
from indad.methods.padim import (
    GaussianAccumulator,
    PaDiM,
    PaDiMModule,
    pyramid_embedding,
    stage_channels,
    whitening_factor,
)
from tests.helpers import make_layout


def slow_mahalanobis(train: np.ndarray, test: np.ndarray, eps: float) -> np.ndarray:
    """Per position: np.cov of the stacked training embeddings, inverse, distance. train (N, d, P), test (M, d, P)."""
    _, d, p = train.shape
    out = np.zeros((test.shape[0], p))
    for j in range(p):
        cov = np.cov(train[:, :, j], rowvar=False) + eps * np.eye(d)
        inv = np.linalg.inv(cov)
        mu = train[:, :, j].mean(axis=0)
        for i in range(test.shape[0]):
            delta = test[i, :, j] - mu
            out[i, j] = np.sqrt(delta @ inv @ delta)
    return out


def test_streaming_statistics_match_the_slow_version():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(30, 6, 10, generator=gen, dtype=torch.float64)
    test = torch.randn(4, 6, 10, generator=gen, dtype=torch.float64)
    acc = GaussianAccumulator()
    for chunk in train.split(7):  # batch size never matters
        acc.update(chunk)
    mean, cov = acc.mean_and_covariance(0.01)
    inv = torch.linalg.inv(cov)
    delta = test.permute(2, 0, 1) - mean[:, None, :]
    ours = (torch.bmm(delta, inv) * delta).sum(-1).sqrt().T.numpy()
    np.testing.assert_allclose(ours, slow_mahalanobis(train.numpy(), test.numpy(), 0.01), rtol=1e-6)


@pytest.mark.parametrize("blocks", [1, 2, 3, 7])
def test_the_triangular_blocks_give_the_slow_distances(blocks):
    gen = torch.Generator().manual_seed(blocks)
    train = torch.randn(30, 7, 10, generator=gen, dtype=torch.float64)
    test = torch.randn(4, 7, 10, generator=gen, dtype=torch.float64)
    acc = GaussianAccumulator()
    acc.update(train)
    mean, cov = acc.mean_and_covariance(0.01)
    backbone = torch.nn.Module()
    backbone.channels = (7,)
    module = PaDiMModule(
        backbone, torch.arange(7), mean, whitening_factor(cov), AnomalyMapGenerator((2, 5), 0.0), blocks=blocks
    )
    assert module.n_blocks == blocks
    delta = test.permute(2, 0, 1) - mean[:, None, :]
    ours = module.squared_distances(delta.contiguous()).sqrt().T.numpy()
    np.testing.assert_allclose(ours, slow_mahalanobis(train.numpy(), test.numpy(), 0.01), rtol=1e-6)


def test_merge_is_exact():
    x = torch.randn(12, 3, 5, dtype=torch.float64)
    whole, a, b = GaussianAccumulator(), GaussianAccumulator(), GaussianAccumulator()
    whole.update(x)
    a.update(x[:5])
    b.update(x[5:])
    a.merge(b)
    for u, v in zip(whole.mean_and_covariance(0.1), a.mean_and_covariance(0.1), strict=True):
        torch.testing.assert_close(u, v)


def test_pyramid_embedding_upsamples_to_the_finest():
    emb = pyramid_embedding(
        [torch.zeros(2, 3, 8, 8), torch.ones(2, 4, 4, 4)], stage_channels(torch.tensor([0, 3, 6]), [3, 4])
    )
    assert emb.shape == (2, 3, 8, 8) and emb[:, 0].eq(0).all() and emb[:, 1:].eq(1).all()


def test_channels_cut_per_stage_equal_the_cut_of_the_whole_embedding():
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, s, s, generator=gen) for c, s in ((24, 16), (40, 8), (112, 4))]
    chosen = torch.randperm(176, generator=gen)[:50].sort().values
    whole = pyramid_embedding(feats).index_select(1, chosen)
    assert torch.equal(pyramid_embedding(feats, stage_channels(chosen, [24, 40, 112])), whole)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = make_layout(tmp_path_factory.mktemp("tiny") / "ds", n_train=6, size=(64, 64))
    return PaDiM(image_size=64, d_reduced=20, batch_size=4, progress=False).fit(root), root


def test_batch_size_never_changes_a_score(fitted):
    model, root = fitted
    one, many = model.predict(root, batch_size=1), model.predict(root, batch_size=5)
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-4)
    np.testing.assert_allclose(one.maps, many.maps, rtol=1e-4, atol=1e-5)
    assert isinstance(model.module, PaDiMModule) and model.module.dims == 20


def test_parameters_are_checked():
    too_many = PaDiM(d_reduced=10_000, image_size=64, progress=False)  # the channel count needs the backbone: fit
    with pytest.raises(InputError, match="d_reduced=10000 exceeds the 176 channels"):
        too_many.fit([np.zeros((64, 64, 3), np.uint8)] * 2)
    with pytest.raises(InputError, match="d_reduced must be >= 0"):
        PaDiM(d_reduced=-1)
    with pytest.raises(InputError, match="epsilon must be > 0"):
        PaDiM(epsilon=0)


def test_end_to_end_hazelnut(hazelnut):
    result = PaDiM(progress=False).fit(hazelnut).evaluate(hazelnut)
    assert result["pixel_auroc"] >= 0.95 and result["aupro"] >= 0.8
    assert result["image_auroc"] >= 0.7  # 10 test images: a coarse check


def test_statistics_too_large_for_the_memory_are_refused_before_allocating(monkeypatch):
    import indad.methods.padim as padim
    from indad.errors import ResourceError

    monkeypatch.setattr(padim, "available_memory", lambda: 2**20)
    acc = GaussianAccumulator()
    with pytest.raises(ResourceError, match=r"4096 positions x 100\^2 .* need 0\.3 GiB, 0\.0 GiB free"):
        acc.update(torch.zeros(1, 100, 4096))
    assert acc.sum is None
