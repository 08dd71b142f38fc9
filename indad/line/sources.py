"""Frame sources: a video file, an HTTP MJPEG or RTSP stream, a local camera, a GenICam camera.

A source yields :class:`Frame` s until it ends or ``stop`` is set, and never hangs or raises on a bad stream: a
live stream that ends or stalls (no frame for ``stall_s``) is opened again after a back-off (0.5 s doubling
to 10 s), a frame that does not decode is skipped; each is logged and counted in :class:`SourceStats`. Only
the frames ``select(index)`` asks for are decoded. Specs (:func:`open_source`): a file path (its end is the
source's end), ``http(s)://...`` (MJPEG, multipart/x-mixed-replace, read here), ``rtsp://...`` (OpenCV's
FFmpeg), ``usb:N`` (local camera N), ``genicam:PRODUCER.cti[#N]`` (``harvesters``, optional).
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..errors import InputError, ResourceError

log = logging.getLogger(__name__)

Select = Callable[[int], bool]


@dataclass
class Frame:
    """A decoded frame: its index in the source (from 1, across reconnections) and the picture (RGB)."""

    index: int
    image: Image.Image
    source: str


@dataclass
class SourceStats:
    """What a source went through: frames seen, decoded, corrupt, stalls, ends and reconnections."""

    frames: int = 0
    decoded: int = 0
    corrupt: int = 0
    stalls: int = 0
    ends: int = 0
    reconnects: int = 0
    connect_failures: int = 0


class FrameSource(Protocol):
    """Where frames come from; ``frames`` yields the selected ones until the source ends or ``stop`` is set."""

    stats: SourceStats

    @property
    def name(self) -> str: ...

    def frames(self, stop: threading.Event, select: Select) -> Iterator[Frame]: ...


@dataclass
class Reconnect:
    """When a live source is opened again: after ``first_s``, doubling up to ``longest_s``; ``attempts`` in a row
    at most (None: forever)."""

    first_s: float = 0.5
    longest_s: float = 10.0
    attempts: int | None = None

    def delays(self) -> Iterator[float]:
        """The waits before each new attempt, in order."""
        delay, n = self.first_s, 0
        while self.attempts is None or n < self.attempts:
            yield delay
            delay, n = min(self.longest_s, delay * 2), n + 1


def _bgr_to_image(array: np.ndarray) -> Image.Image:
    """An OpenCV frame (BGR, BGRA or grey) as an RGB picture."""
    if array.ndim == 2:
        return Image.fromarray(array).convert("RGB")
    return Image.fromarray(np.ascontiguousarray(array[..., 2::-1]))


def decode_jpeg(data: bytes) -> Image.Image | None:
    """A JPEG (or any image OpenCV reads) as an RGB picture; None if it does not decode."""
    import cv2

    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if array is None else _bgr_to_image(array)


@dataclass
class _Live:
    """The reconnect loop shared by the live sources: ``connect`` yields frame parts until it ends or fails."""

    name: str
    reconnect: Reconnect
    stats: SourceStats

    def run(self, stop: threading.Event, connect: Callable[[], Iterator[Frame]]) -> Iterator[Frame]:
        delays = self.reconnect.delays()
        while not stop.is_set():
            got_any = False
            try:
                for frame in connect():
                    got_any = True
                    yield frame
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                self.stats.ends += 1
                log.warning("%s: the stream ended; connecting again", self.name)
            except _StallError as exc:
                self.stats.stalls += 1
                log.warning("%s: %s; connecting again", self.name, exc)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                self.stats.connect_failures += 1
                log.warning("%s: cannot read the stream (%s)", self.name, exc)
            if got_any:
                delays = self.reconnect.delays()
            delay = next(delays, None)
            if delay is None:
                log.error("%s: giving up after %s attempts", self.name, self.reconnect.attempts)
                return
            self.stats.reconnects += 1
            stop.wait(delay)


class _StallError(Exception):
    """No frame for the stall time."""


@dataclass
class MjpegSource:
    """An HTTP MJPEG stream (``multipart/x-mixed-replace``), parsed here: stalls are socket time-outs, a part
    that does not decode is a corrupt frame."""

    url: str
    stall_s: float = 5.0
    reconnect: Reconnect = field(default_factory=Reconnect)
    stats: SourceStats = field(default_factory=SourceStats)

    @property
    def name(self) -> str:
        return self.url

    def frames(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        """The selected frames, across reconnections."""
        return _Live(self.url, self.reconnect, self.stats).run(stop, lambda: self._connection(stop, select))

    def _connection(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        try:
            reply = urllib.request.urlopen(self.url, timeout=self.stall_s)
        except TimeoutError as exc:
            raise _StallError(f"no answer within {self.stall_s} s") from exc
        with reply:
            boundary = _boundary(reply.headers.get("Content-Type", ""))
            while not stop.is_set():
                try:
                    part = _read_part(reply, boundary)
                except TimeoutError as exc:
                    raise _StallError(f"no frame for {self.stall_s} s") from exc
                if part is None:
                    return
                self.stats.frames += 1
                index = self.stats.frames
                if not select(index):
                    continue
                image = decode_jpeg(part)
                if image is None:
                    self.stats.corrupt += 1
                    log.warning("%s: frame %d does not decode (%d bytes): skipped", self.url, index, len(part))
                    continue
                self.stats.decoded += 1
                yield Frame(index, image, f"{self.url}#{index}")


def _boundary(content_type: str) -> bytes:
    """The multipart boundary of an MJPEG stream's Content-Type."""
    if "multipart" not in content_type.lower():
        raise ConnectionError(f"not an MJPEG stream (Content-Type {content_type!r})")
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            value = value.strip('"')
            return (value if value.startswith("--") else "--" + value).encode("latin-1")
    raise ConnectionError(f"MJPEG stream without a boundary (Content-Type {content_type!r})")


def _read_part(reply: Any, boundary: bytes) -> bytes | None:
    """The next part's body (None at the end of the stream): headers, then Content-Length bytes, or up to the
    next boundary when the part has no length."""
    line = b""
    while line.strip() != boundary:
        line = reply.readline()
        if not line:
            return None
        if line.strip() == boundary + b"--":
            return None
    length = None
    while True:
        line = reply.readline()
        if not line:
            return None
        if not line.strip():
            break
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is not None:
        data = reply.read(length)
        return data if len(data) == length else None
    chunks: list[bytes] = []
    while True:  # no length: the part runs up to the next boundary line
        line = reply.readline()
        if not line or line.strip() in (boundary, boundary + b"--"):
            return b"".join(chunks).rstrip(b"\r\n")
        chunks.append(line)


_END = object()


@dataclass
class CaptureSource:
    """A source read by OpenCV (FFmpeg): a video file, an RTSP URL or a local camera (``usb:N``).

    A reader thread grabs frames (decoding only the selected ones) so that a read that blocks is a stall
    after ``stall_s``, not a hang. A file ends the source at its end; a live source is opened again.
    """

    target: str | int
    live: bool
    stall_s: float = 5.0
    reconnect: Reconnect = field(default_factory=Reconnect)
    stats: SourceStats = field(default_factory=SourceStats)

    @property
    def name(self) -> str:
        return f"usb:{self.target}" if isinstance(self.target, int) else str(self.target)

    def frames(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        """The selected frames, until the file's end (or, live, across reconnections)."""
        if self.live:
            return _Live(self.name, self.reconnect, self.stats).run(stop, lambda: self._connection(stop, select))
        return self._connection(stop, select)

    def _connection(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        import cv2

        if isinstance(self.target, str) and "://" in self.target:  # a network stream: bounded opens and reads
            ms = int(self.stall_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        else:
            capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            if not self.live:
                raise InputError(f"OpenCV cannot read the video {self.target}")
            raise ConnectionError(f"cannot open {self.name}")
        frames: queue.Queue = queue.Queue(maxsize=4)
        reader = threading.Thread(target=self._read, args=(capture, frames, stop, select), daemon=True)
        reader.start()
        while not stop.is_set():
            try:
                item = frames.get(timeout=self.stall_s)
            except queue.Empty:
                raise _StallError(f"no frame for {self.stall_s} s") from None  # the reader is left to its fate
            if item is _END:
                return
            index, array = item
            if array is None:
                self.stats.corrupt += 1
                log.warning("%s: frame %d does not decode: skipped", self.name, index)
                continue
            self.stats.decoded += 1
            yield Frame(index, _bgr_to_image(array), f"{self.name}#{index}")

    def _read(self, capture: Any, frames: queue.Queue, stop: threading.Event, select: Select) -> None:
        """Grab frames into ``frames`` (decoded when selected) until the end, a failure or ``stop``."""
        try:
            while not stop.is_set():
                if not capture.grab():
                    break
                self.stats.frames += 1
                index = self.stats.frames
                if not select(index):
                    continue
                ok, array = capture.retrieve()
                item = (index, array if ok and array is not None and array.size else None)
                while not stop.is_set():
                    try:
                        frames.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        finally:
            capture.release()
        while not stop.is_set():
            try:
                frames.put(_END, timeout=0.2)
                break
            except queue.Full:
                continue


@dataclass
class GenicamSource:
    """A GenICam camera through a GenTL producer (``.cti`` file) and the optional ``harvesters`` package."""

    producer: Path
    device: int = 0
    stall_s: float = 5.0
    reconnect: Reconnect = field(default_factory=Reconnect)
    stats: SourceStats = field(default_factory=SourceStats)

    def __post_init__(self) -> None:
        try:
            import harvesters  # noqa: F401
        except ImportError:
            raise ResourceError(
                "GenICam cameras need the harvesters package (pip install harvesters) and the camera maker's "
                "GenTL producer file (.cti)"
            ) from None
        if not self.producer.is_file() or self.producer.suffix.lower() != ".cti":
            raise InputError(
                f"GenICam needs a GenTL producer file (.cti) from the camera maker or its SDK: {self.producer} "
                "is not one (genicam:/path/to/producer.cti[#N])"
            )

    @property
    def name(self) -> str:
        return f"genicam:{self.producer}#{self.device}"

    def frames(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        """The selected frames of the camera, across reconnections."""
        return _Live(self.name, self.reconnect, self.stats).run(stop, lambda: self._connection(stop, select))

    def _connection(self, stop: threading.Event, select: Select) -> Iterator[Frame]:
        from harvesters.core import Harvester

        harvester = Harvester()
        try:
            harvester.add_file(str(self.producer))
            harvester.update()
            if len(harvester.device_info_list) <= self.device:
                raise ConnectionError(f"the producer {self.producer} finds no camera number {self.device}")
            acquirer = harvester.create(self.device)
            acquirer.start()
            try:
                while not stop.is_set():
                    try:
                        with acquirer.fetch(timeout=self.stall_s) as buffer:
                            component = buffer.payload.components[0]
                            data = np.array(component.data, copy=True)
                            shape = (component.height, component.width, -1)
                    except Exception as exc:  # harvesters' time-out and transport errors
                        raise _StallError(f"no frame for {self.stall_s} s ({exc})") from exc
                    self.stats.frames += 1
                    if select(self.stats.frames):
                        array = data.reshape(shape)
                        image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array[..., :3]).convert("RGB")
                        self.stats.decoded += 1
                        yield Frame(self.stats.frames, image, f"{self.name}#{self.stats.frames}")
            finally:
                acquirer.stop()
                acquirer.destroy()
        finally:
            harvester.reset()


def open_source(spec: str, stall_s: float = 5.0, reconnect: Reconnect | None = None) -> FrameSource:
    """The source a spec names (see the module's docstring); an :class:`InputError` naming a bad spec."""
    reconnect = reconnect or Reconnect()
    lower = spec.lower()
    if lower.startswith(("http://", "https://")):
        return MjpegSource(spec, stall_s, reconnect)
    if lower.startswith("genicam:"):
        producer, _, device = spec[len("genicam:") :].partition("#")
        if device and not device.isdigit():
            raise InputError(f"GenICam camera number must be a number: {spec!r}")
        return GenicamSource(Path(producer), int(device or 0), stall_s, reconnect)
    if lower.startswith("usb:"):
        number = spec[4:]
        if not number.isdigit():
            raise InputError(f"a local camera is usb:N (N its number, 0 for the first), got {spec!r}")
        return CaptureSource(int(number), True, stall_s, reconnect)
    if "://" in spec:
        return CaptureSource(spec, True, stall_s, reconnect)
    if not Path(spec).is_file():
        raise InputError(f"no such video file: {spec} (or give a stream URL, usb:N or genicam:PRODUCER.cti)")
    return CaptureSource(spec, False, stall_s, reconnect)
