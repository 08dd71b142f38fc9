import threading
import time

import numpy as np
import pytest
import torch

from indad.service import MicroBatcher


def _score(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Score: the image's mean; map: its first channel."""
    if torch.isnan(images).any():
        raise ValueError("nan image")
    return images.mean(dim=(1, 2, 3)).numpy(), images[:, 0].numpy()


def test_concurrent_images_are_scored_together_and_each_gets_its_own_result():
    sizes: list[int] = []
    batcher = MicroBatcher(_score, max_batch=4, max_wait_s=0.2, on_batch=sizes.append).start()
    try:
        futures = [batcher.submit(torch.full((3, 2, 2), float(i))) for i in range(10)]
        results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.close()
    assert [score for score, _ in results] == [float(i) for i in range(10)]
    assert all(np.all(amap == i) for i, (_, amap) in enumerate(results))
    assert sum(sizes) == 10 and max(sizes) <= 4 and len(sizes) <= 4  # batched, never above max_batch


def test_a_lone_image_waits_at_most_max_wait():
    batcher = MicroBatcher(_score, max_batch=64, max_wait_s=0.05).start()
    try:
        start = time.perf_counter()
        batcher.submit(torch.zeros(3, 2, 2)).result(timeout=10)
        assert time.perf_counter() - start < 2.0
    finally:
        batcher.close()


def test_a_failing_batch_fails_its_futures_and_the_worker_keeps_serving():
    batcher = MicroBatcher(_score, max_batch=1, max_wait_s=0).start()
    try:
        with pytest.raises(ValueError, match="nan image"):
            batcher.submit(torch.full((3, 2, 2), float("nan"))).result(timeout=10)
        assert batcher.submit(torch.ones(3, 2, 2)).result(timeout=10)[0] == 1.0
    finally:
        batcher.close()


def test_submissions_from_many_threads():
    batcher = MicroBatcher(_score, max_batch=8, max_wait_s=0.01).start()
    got: dict[int, float] = {}

    def client(i: int) -> None:
        got[i] = batcher.submit(torch.full((3, 2, 2), float(i))).result(timeout=10)[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.close()
    assert got == {i: float(i) for i in range(32)}
