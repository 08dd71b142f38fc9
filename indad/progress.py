"""Progress of long steps: tqdm bars in a terminal, or events for a callback (the web app).

Every long loop of indad (feature extraction, coreset selection, scoring,
downloads) reports through :func:`track` or :func:`progress_bar`; what
``progress`` is decides where the report goes:

- ``True``: a tqdm bar on stderr;
- ``False``: nothing;
- a callable: a :class:`ProgressEvent` at the start, after each step and at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


@dataclass(frozen=True)
class ProgressEvent:
    """How far a step has come.

    Attributes
    ----------
    stage:
        What runs, as a tqdm bar would name it (``"patchcore: features"``, ``"coreset"``).
    done:
        Units finished so far (batches, points, bytes).
    total:
        Units in all, None when unknown.
    """

    stage: str
    done: int
    total: int | None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[ProgressEvent], None]
Progress = bool | ProgressCallback


class ProgressBar(Protocol):
    """What :func:`progress_bar` returns: tqdm's ``update`` and ``close``, and a context manager."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


class _CallbackBar:
    """The part of tqdm's interface indad uses, sending events to a callback."""

    def __init__(self, callback: ProgressCallback, stage: str, total: int | None) -> None:
        self.callback, self.stage, self.total, self.done = callback, stage, total, 0
        callback(ProgressEvent(stage, 0, total))

    def update(self, n: int = 1) -> None:
        self.done += n
        self.callback(ProgressEvent(self.stage, self.done, self.total))

    def close(self) -> None:
        pass

    def __enter__(self) -> _CallbackBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(stage: str, total: int | None, progress: Progress = True, **tqdm_options: Any) -> ProgressBar:
    """A bar with ``update(n)`` and ``close()`` (also a context manager) reporting to ``progress``."""
    if callable(progress):
        return _CallbackBar(progress, stage, total)
    return tqdm(total=total, desc=stage, disable=not progress, leave=False, **tqdm_options)


def track(
    iterable: Iterable[T], stage: str, total: int | None = None, progress: Progress = True, **tqdm_options: Any
) -> Iterator[T]:
    """The items of ``iterable``, reporting each one done to ``progress``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not callable(progress):
        yield from tqdm(iterable, desc=stage, total=total, disable=not progress, leave=False, **tqdm_options)
        return
    bar = _CallbackBar(progress, stage, total)
    for item in iterable:
        yield item
        bar.update()
