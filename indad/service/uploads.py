"""Request bodies to images: the body read within a limit, multipart or raw, each upload decoded and checked."""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; a 413 :class:`RequestError` as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body_too_large", f"request body of {int(declared)} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")
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
        raise RequestError(400, "bad_multipart", f"cannot read the multipart body: {exc}") from exc
    uploads = []
    for field, value in form.multi_items():
        if isinstance(value, UploadFile):
            uploads.append((value.filename or field, await value.read()))
            await value.close()
    if not uploads:
        raise RequestError(400, "no_images", "the multipart body holds no file parts (send images as files)")
    return uploads


def decode_upload(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """An uploaded image as 8-bit RGB; a :class:`RequestError` naming ``name`` when it cannot be used.

    Empty data (400), data that is not an image (415), an image of more than
    ``max_pixels`` pixels (413, checked from its header before decoding: no
    decompression bombs) and a truncated or corrupt image (422) are refused.
    """
    if not data:
        raise RequestError(400, "empty_image", f"{name}: empty upload (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise RequestError(413, "too_many_pixels", f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise RequestError(415, "not_an_image", f"{name}: not an image (no known image format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(422, "unreadable_image", f"{name}: unreadable image header ({exc})") from exc
    if width * height > max_pixels:
        raise RequestError(
            413,
            "too_many_pixels",
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
        )
    try:
        return to_rgb(decode_image(io.BytesIO(data), name))
    except ImageReadError as exc:
        raise RequestError(422, "unreadable_image", str(exc)) from exc
