"""Request bodies: read whole up to ``daemon.max_body``, as sent or gzip-compressed (``Content-Encoding: gzip``).

The limit holds for the body the parsers get: a gzip body is inflated a chunk at a time and refused as soon as
its inflated size passes the limit (a small body that inflates to gigabytes costs no more than the limit).
Bodies are UTF-8 whatever their ``charset`` says (an ASCII body labelled ISO-8859-1, as Java clients send, is
fine); other bytes are refused by the parsers with a 400.
"""

from __future__ import annotations

import zlib
from contextlib import aclosing

from starlette.requests import Request

GZIP = ("gzip", "x-gzip")
MAX_MEMBERS = 64  # gzip members in one body: each costs a copy of the rest of its chunk


class BodyRefused(Exception):
    """A body not read: larger than ``daemon.max_body`` (413), compressed otherwise than with gzip (415), or not
    valid gzip (400)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body (``limit`` is ``daemon.max_body``), inflated if it came gzip-compressed."""
    header = request.headers.get("content-encoding", "")
    codings = [c for c in (c.strip().lower() for c in header.split(",")) if c not in ("", "identity")]
    encoding = codings[0] if codings else "identity"  # a list names the codings in the order applied (RFC 9110)
    if len(codings) > 1 or encoding not in ("identity", *GZIP):
        raise BodyRefused(
            415, f"Content-Encoding {header.strip()[:40]!r} is not supported: send the body uncompressed or gzip"
        )
    too_large = BodyRefused(413, f"body larger than daemon.max_body ({limit} bytes)")
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large
    inflate = _Inflate(limit, too_large) if encoding in GZIP else None
    chunks, size = [], 0
    refused: BodyRefused | None = None
    async with aclosing(request.stream()) as stream:  # (closed also when the body is over the limit)
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise too_large
            if inflate is None:
                chunks.append(chunk)
            elif refused is None:  # (a body refused is read to its end all the same: the client is still sending)
                try:
                    chunks.append(inflate.feed(chunk))
                except BodyRefused as exc:
                    refused = exc
    if inflate is not None and refused is None:
        inflate.finish()
    if refused is not None:
        raise refused
    return b"".join(chunks)


class _Inflate:
    """A gzip stream inflated as it comes, at most ``limit`` bytes; members one after the other are one body
    (RFC 1952, as ``gzip`` the tool writes them when files are concatenated)."""

    def __init__(self, limit: int, too_large: BodyRefused) -> None:
        self.left = limit
        self.too_large = too_large
        self.member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.fed = False  # the current member has had bytes
        self.members = 0  # those that had bytes

    def feed(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                if not self.fed:
                    self.fed, self.members = True, self.members + 1
                    if self.members > MAX_MEMBERS:
                        raise BodyRefused(400, f"the gzip body has more than {MAX_MEMBERS} members")
                piece = self.member.decompress(data, self.left + 1)
                self.left -= len(piece)
                if self.left < 0 or self.member.unconsumed_tail:  # (a tail is left only past the cap)
                    raise self.too_large
                out.append(piece)
                data = b""
                if self.member.eof:  # the next member, if any, begins right after
                    data = self.member.unused_data
                    self.member, self.fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
        except zlib.error as exc:
            raise BodyRefused(400, f"the body is not valid gzip ({exc})") from None
        return b"".join(out)

    def finish(self) -> None:
        if self.fed and not self.member.eof:
            raise BodyRefused(400, "the gzip body is cut short")
