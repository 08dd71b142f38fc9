import numpy as np
import pytest
import torch

from indad.errors import InputError
from indad.memory import FaissNearestNeighbors, TorchNearestNeighbors, blocked_knn


def test_faiss_and_torch_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 24, generator=gen), torch.randn(300, 24, generator=gen)
    ref = torch.cdist(queries.double(), bank.double())
    ref_d, ref_i = ref.topk(3, dim=1, largest=False)
    for searcher in (FaissNearestNeighbors(), TorchNearestNeighbors(chunk=64)):
        d, i = searcher.fit(bank).search(queries, 3)
        assert torch.equal(i, ref_i)
        assert torch.allclose(d.double(), ref_d, rtol=1e-4, atol=1e-4)


def test_k_larger_than_the_bank_is_clipped():
    gen = torch.Generator().manual_seed(2)
    bank, queries = torch.randn(2, 4, generator=gen), torch.randn(5, 4, generator=gen)
    d, i = FaissNearestNeighbors().fit(bank).search(queries, 3)
    assert d.shape == (5, 2) and i.shape == (5, 2)
    ref_d, ref_i = torch.cdist(queries, bank).sort(dim=1)  # both bank points, nearest first
    assert torch.equal(i, ref_i) and torch.allclose(d, ref_d, atol=1e-5)


@pytest.mark.parametrize("k,block", [(1, (7, 13)), (4, (7, 13)), (4, (None, 1024)), (20, (5, 3))])
def test_blocked_knn_matches_brute_force(k, block):
    gen = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(2, 50, 6, generator=gen), torch.randn(2, 30, 6, generator=gen)
    ref_d, ref_i = torch.cdist(queries.double(), bank.double()).topk(k, dim=-1, largest=False)
    d, i = blocked_knn(queries, bank, k, block)
    assert d.shape == i.shape == (2, 30, k) and d.dtype == torch.float32
    assert torch.equal(i, ref_i) and torch.allclose(d.double(), ref_d, rtol=1e-4, atol=1e-4)
    # The bank in parts (float16 here) is searched as their concatenation.
    d, i = blocked_knn(queries, [bank[:, :17].half(), bank[:, 17:].half()], k, block)
    ref_d, ref_i = torch.cdist(queries.double(), bank.half().double()).topk(k, dim=-1, largest=False)
    assert torch.equal(i, ref_i) and torch.allclose(d.double(), ref_d, rtol=1e-4, atol=1e-4)
    assert blocked_knn(queries[0], bank[0], 99)[0].shape == (30, 50)
    with pytest.raises(InputError, match="empty bank"):
        blocked_knn(queries, [], 1)


def _real_patches():
    """Patch features of real images (hazelnut, tf_efficientnet_lite0), as PatchCore scores them."""
    from indad.backbones import Backbone
    from indad.data import Preprocess, read_image, scan_test
    from indad.methods.patchcore import patch_queries
    from tests.helpers import shared_datasets

    root = shared_datasets() / "hazelnut_reduced"
    if not root.exists():
        pytest.skip("hazelnut_reduced not available")
    backbone = Backbone("tf_efficientnet_lite0", (8, 16))
    pre = Preprocess((128, 128), None, backbone.mean, backbone.std)
    images = torch.stack([pre.image(read_image(s.path)) for s in scan_test(root)[:8]])
    with torch.inference_mode():
        queries, _ = patch_queries(backbone, images)
    return queries.reshape(-1, queries.shape[-1]).clone()


def test_hnsw_finds_the_exact_neighbour_of_most_real_patches():
    from indad.memory import HnswNearestNeighbors

    feats = _real_patches()
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(feats.shape[0], generator=gen)
    bank, queries = feats[perm[:1500]].contiguous(), feats[perm[1500:]].contiguous()
    exact_d, exact_i = FaissNearestNeighbors().fit(bank).search(queries, 1)
    d, i = HnswNearestNeighbors(ef_search=16).fit(bank).search(queries, 1)
    assert d.shape == i.shape == (queries.shape[0], 1)
    assert float((i == exact_i).float().mean()) >= 0.95
    # Each distance is the true distance to the row returned: never below the exact nearest one.
    true_d = torch.linalg.vector_norm(queries - bank[i[:, 0]], dim=1)
    assert torch.allclose(d[:, 0], true_d, rtol=1e-4, atol=1e-4)
    assert bool((d >= exact_d - 1e-4 * exact_d.clamp_min(1)).all())
    # The same bank gives the same graph: identical answers from a second index.
    d2, i2 = HnswNearestNeighbors(ef_search=16).fit(bank).search(queries, 1)
    assert torch.equal(i, i2) and torch.equal(d, d2)
    assert HnswNearestNeighbors().fit(bank[:2]).search(queries[:5], 3)[1].shape == (5, 2)


def test_hnsw_graph_is_reused_only_with_its_own_bank():
    from indad.memory import HnswNearestNeighbors

    gen = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(3000, 24, generator=gen), torch.randn(200, 24, generator=gen)
    built = HnswNearestNeighbors(ef_search=16).fit(bank)
    graph = built.graph()
    assert not built.from_graph and graph.dtype == np.uint8
    import faiss

    assert graph.nbytes == faiss.serialize_index(built.index).nbytes - bank.numel() * 2  # without the float16 bank
    reused = HnswNearestNeighbors(ef_search=16, graph=graph).fit(bank)
    assert reused.from_graph
    for a, b in zip(built.search(queries, 3), reused.search(queries, 3), strict=True):
        assert torch.equal(a, b)
    # Another bank, a cut graph or another M: the graph is not used, a new one is built.
    for other, kwargs in ((bank[:2000], {}), (bank, {"m": 16})):
        assert not HnswNearestNeighbors(graph=graph, **kwargs).fit(other).from_graph
    assert not HnswNearestNeighbors(graph=graph[: len(graph) // 2]).fit(bank).from_graph
