"""A seeded uniform sample of at most ``capacity`` rows from a stream of row chunks, in bounded memory."""

from __future__ import annotations

import torch


class PatchPool:
    """Keeps a uniform random sample (without replacement) of the rows added, at most ``capacity`` of them.

    Each row gets a key drawn from a seeded generator; the rows with the
    ``capacity`` smallest keys are kept (a priority reservoir): the sample does
    not depend on how the stream is cut into chunks, only on the rows' order,
    and memory stays ``capacity`` rows whatever the stream's length.

    Parameters
    ----------
    capacity:
        Rows kept at most (>= 1).
    seed:
        Seeds the keys.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = max(1, int(capacity))
        self._gen = torch.Generator().manual_seed(seed)
        self._rows: torch.Tensor | None = None
        self._keys = torch.empty(0)
        self._order = torch.empty(0, dtype=torch.int64)  # the rows' places in the stream
        self.seen = 0

    def add(self, rows: torch.Tensor) -> None:
        """Offer ``rows`` ``(n, D)``; the pool keeps the sample of every row offered so far."""
        keys = torch.rand(len(rows), generator=self._gen)
        order = torch.arange(self.seen, self.seen + len(rows))
        self.seen += len(rows)
        if self._rows is None:
            self._rows = rows[:0]
        if len(self._keys) >= self.capacity:  # a full pool: only rows that can still be among the smallest
            inside = keys < self._keys.max()
            rows, keys, order = rows[inside.to(rows.device)], keys[inside], order[inside]
        all_keys = torch.cat([self._keys, keys])
        all_rows = torch.cat([self._rows, rows])
        all_order = torch.cat([self._order, order])
        if len(all_keys) > self.capacity:
            best = all_keys.topk(self.capacity, largest=False).indices
            all_keys, all_rows, all_order = all_keys[best], all_rows[best.to(all_rows.device)], all_order[best]
        self._keys, self._rows, self._order = all_keys, all_rows, all_order

    def chunks(self) -> list[torch.Tensor]:
        """The sample as one chunk, rows in their stream order (empty list when nothing was added)."""
        if self._rows is None or not len(self._rows):
            return []
        order = self._order.argsort()
        return [self._rows[order.to(self._rows.device)]]
