"""Helpers for the ``odp serve`` tests: hostile images and a WSGI call without a server."""

from __future__ import annotations

import io
import sys
import zlib
from collections.abc import Callable, Mapping


def png_bomb(side: int) -> bytes:
    """A real ``side x side`` RGB PNG of zeros: ``3 * side^2`` bytes of pixels in a few
    hundred KB (10000: 300 MB decoded, above the default pixel limit, ~300 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = side.to_bytes(4, "big") + side.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    # every row is filter byte 0 and black pixels: the whole stream is zeros. Deflate one
    # block fully flushed and repeat it (the same bytes each time), then the last block.
    total, block = (1 + 3 * side) * side, 1 << 20
    count, rest = divmod(total, block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(b"\0" * block) + comp.flush(zlib.Z_FULL_FLUSH)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    last = comp.compress(b"\0" * rest) + comp.flush()
    adler, zeros = 1, b"\0" * block
    for _ in range(count):
        adler = zlib.adler32(zeros, adler)
    adler = zlib.adler32(b"\0" * rest, adler)
    idat = b"\x78\xda" + piece * count + last + adler.to_bytes(4, "big")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def call_wsgi(
    app: Callable,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    declare_length: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of ``app`` for one request, as gunicorn would pass it."""
    from wsgiref.util import setup_testing_defaults

    environ: dict = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
    }
    if declare_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
        else:
            environ[f"HTTP_{name}"] = value
    setup_testing_defaults(environ)
    seen: dict = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    out = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], out
