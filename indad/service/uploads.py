"""Request bodies to images: the body read within a limit, multipart or raw, each upload decoded and checked."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator, Callable
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..data.images import decode_image, to_rgb
from ..errors import ImageReadError, InputError


class RequestError(InputError):
    """A request the service cannot use: an HTTP status, a short machine-readable kind and a message naming it."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


async def read_body(
    request: Request, limit: int, timeout_s: float | None = None, reserve: Callable[[int], Any] | None = None
) -> bytes:
    """The request body; a 413 :class:`RequestError` as soon as it is known to exceed ``limit`` bytes, a 408 one
    when it has not all arrived ``timeout_s`` seconds after the headers. ``reserve(n)`` is called before ``n`` more
    bytes are kept (it may refuse them by raising): once for a declared length, before anything is read, else
    for each chunk. A client that hangs up raises Starlette's ``ClientDisconnect``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body_too_large", f"request body of {int(declared)} bytes exceeds the limit of {limit}")
    if declared.isdigit() and reserve is not None:
        reserve(int(declared))
        reserve = None
    deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
    chunks, size = [], 0
    stream = request.stream()
    while True:
        try:
            remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
            chunk = await asyncio.wait_for(anext(stream), remaining)
        except StopAsyncIteration:
            break
        except TimeoutError as exc:
            raise RequestError(
                408, "body_timeout", f"the request body did not arrive within {timeout_s} s ({size} bytes came)"
            ) from exc
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")
        if reserve is not None and chunk:
            reserve(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def read_uploads(request: Request, body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    """The uploaded images as ``(name, bytes)``: every file part of a multipart body, else the raw body as one image.

    A raw body is named by the ``name`` query parameter (default ``body``).
    """
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return [(request.query_params.get("name", "body"), body)]
    parser = MultiPartParser(request.headers, _once(body), max_files=max_images, max_fields=max_images)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if str(exc).startswith("Too many files"):  # the parser stops at the first file past max_images
            raise RequestError(
                413, "too_many_images", f"more than {max_images} images in one request (the limit)"
            ) from exc
        raise RequestError(400, "bad_multipart", f"cannot read the multipart body: {exc}") from exc
    uploads = []
    for field, value in form.multi_items():
        if isinstance(value, UploadFile):
            uploads.append((value.filename or field, await value.read()))
            await value.close()
    if not uploads:
        raise RequestError(400, "no_images", "the multipart body holds no file parts (send images as files)")
    return uploads


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts as some image format Pillow knows does (its signature), decodable or not."""
    Image.init()
    head = data[:32]
    return any(accept is not None and accept(head) for _, accept in Image.OPEN.values())


def probe_upload(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of an upload from its header (nothing decoded); a :class:`RequestError` naming ``name``
    when it cannot be used.

    Empty data (400), data in no known image format (415), an image of more than
    ``max_pixels`` pixels (413: no decompression bombs) are refused; so is data
    that starts as a known format but whose header cannot be read (422, as an
    image that fails to decode: :func:`decode_upload`).
    """
    if not data:
        raise RequestError(400, "empty_image", f"{name}: empty upload (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise RequestError(413, "too_many_pixels", f"{name}: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, UnidentifiedImageError) and not looks_like_image(data):
            raise RequestError(415, "not_an_image", f"{name}: not an image (no known image format)") from exc
        raise RequestError(422, "unreadable_image", f"{name}: unreadable image ({exc})") from exc
    if width * height > max_pixels:
        raise RequestError(
            413,
            "too_many_pixels",
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
        )
    return width, height


def decode_upload(data: bytes, name: str) -> Image.Image:
    """An upload checked by :func:`probe_upload` as 8-bit RGB, upright by its EXIF orientation; a 422
    :class:`RequestError` (``unreadable_image``) naming ``name`` when it is truncated or corrupt."""
    try:
        return to_rgb(decode_image(io.BytesIO(data), name))
    except ImageReadError as exc:
        raise RequestError(422, "unreadable_image", str(exc)) from exc
