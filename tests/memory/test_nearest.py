import pytest
import torch

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
    with pytest.raises(ValueError, match="empty bank"):
        blocked_knn(queries, [], 1)
