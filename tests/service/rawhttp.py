"""HTTP/1.1 over raw sockets, for clients a library would not play: slow, partial, hanging up, kept alive."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

import requests


@dataclass
class RawResponse:
    """A response read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server of ``url`` (``http://HOST:PORT``)."""
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A request's bytes: line, headers (Host and Content-Length added) and body."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body of ``files`` (name, data) as ``images`` parts, and its Content-Type header."""
    prepared = requests.Request(
        "POST", "http://x/", files=[("images", (name, data, "application/octet-stream")) for name, data in files]
    ).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, {"Content-Type": prepared.headers["Content-Type"]}


def read_response(sock: socket.socket, timeout: float = 30.0) -> RawResponse:
    """The next response on ``sock`` (with a Content-Length); ``ConnectionError`` if the server closes first."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server before a response ({data[:80]!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server within a response body")
        rest += chunk
    return RawResponse(int(status_line.split()[1]), headers, rest[:length])


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading and dropping anything it sends), None if still open after
    ``seconds``."""
    start = time.monotonic()
    while (left := seconds - (time.monotonic() - start)) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            return None
        except ConnectionResetError:
            return time.monotonic() - start
    return None
