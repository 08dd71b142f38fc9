"""The admission counter and the log's repeat filter, on their own (no server)."""

import logging
import threading

import pytest

from indad.service.admission import Admission
from indad.service.server import RepeatFilter
from indad.service.uploads import RequestError


def test_reservations_from_many_threads_never_pass_the_limit():
    admission = Admission({"images": 8, "pixels": 10**6})
    peak, granted, refused = [0], [0], [0]
    lock, start = threading.Lock(), threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(200):
            try:
                held = admission.reserve(images=3, pixels=1000)
            except RequestError as exc:
                assert exc.status == 503 and exc.kind == "busy"
                with lock:
                    refused[0] += 1
                continue
            with lock:
                granted[0] += 1
                peak[0] = max(peak[0], admission.held["images"])
            held.release()
            held.release()  # a second release gives nothing back twice

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] <= 8 and granted[0] + refused[0] == 16 * 200 and granted[0] > 0
    assert admission.held == {"images": 0, "pixels": 0}


def test_a_reservation_is_all_or_nothing_and_names_what_is_full():
    admission = Admission({"images": 10, "pixels": 100})
    admission.reserve(images=1, pixels=90)
    with pytest.raises(RequestError, match="pixels"):
        admission.reserve(images=1, pixels=20)
    assert admission.held == {"images": 1, "pixels": 90}
    assert not admission.full("images")


def test_repeats_of_a_message_are_dropped_within_the_window_and_counted():
    """Issue 23 item 4: a fault repeating fast (e.g. out of file descriptors) cannot fill the disk."""
    now = [0.0]
    repeats = RepeatFilter(window_s=10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    assert repeats.filter(record("socket.accept() out of system resource"))
    assert not any(repeats.filter(record("socket.accept() out of system resource")) for _ in range(10_000))
    assert repeats.filter(record("another message"))
    now[0] = 11.0
    later = record("socket.accept() out of system resource")
    assert repeats.filter(later) and "10000 more like this" in later.getMessage()
