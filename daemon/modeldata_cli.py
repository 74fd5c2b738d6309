"""``alphawatch push-data {predictions,returns,portfolio,features} FILE|-``: send a file of model data.

The format comes from ``--format`` or the file name (``.csv``, ``.ndjson``/``.jsonl``, else JSON). CSV and NDJSON
files larger than ``--chunk-bytes`` go in several requests, split at row boundaries (each request is all or
nothing; the command stops at the first refused one and says how many rows went before it).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alphawatch.daemon.cli import CommandError, _client, _client_args, _config_arg, whole_number
from alphawatch.daemon.errors import ConfigError
from alphawatch.daemon.modeldata import KINDS

CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "json": "application/json"}


def add_parser(subparsers: Any) -> None:
    push = subparsers.add_parser(
        "push-data",
        help="send predictions, returns, portfolio returns or features",
        description="Send a file of model data (CSV with a header, NDJSON or JSON) to the running daemon.",
    )
    _config_arg(push)
    _client_args(push)
    push.add_argument("kind", choices=KINDS, help="what the file holds")
    push.add_argument("file", help="the file, or '-' for stdin")
    push.add_argument("--format", choices=sorted(CONTENT_TYPES), help="default: from the file name (else json)")
    push.add_argument(
        "--chunk-bytes", type=whole_number(1), default=4_000_000, help="split CSV/NDJSON into requests this big"
    )
    push.set_defaults(func=cmd_push_data)


def cmd_push_data(args: argparse.Namespace) -> int:
    from alphawatch.daemon.client import AlphawatchClient, ClientError, RefusedError

    try:
        url, headers = _client(args, write=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    fmt = args.format or _format_of(args.file)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"push-data: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    name = "stdin" if args.file == "-" else args.file
    try:
        chunks = list(_chunks(data, fmt, max(args.chunk_bytes, 1024)))  # every piece, before any is sent
    except CommandError as exc:
        print(f"push-data: {name}: {exc}", file=sys.stderr)
        return 1
    token = headers.get("Authorization", "").removeprefix("Bearer ") or None
    totals = {"accepted": 0, "derived": 0}
    with AlphawatchClient(url, token) as client:
        for number, chunk in enumerate(chunks):
            try:
                answer = client.push_body(args.kind, chunk, CONTENT_TYPES[fmt])
            except RefusedError as exc:
                print(f"push-data: request {number + 1} {exc}", file=sys.stderr)
                for item in exc.items[:20]:
                    print(f"  row {item['index']}: {item['field'] or '-'}: {item['message']}", file=sys.stderr)
                if number:
                    print(f"  ({totals['accepted']} rows of earlier requests were stored)", file=sys.stderr)
                return 1
            except ClientError as exc:
                print(f"push-data: {exc}", file=sys.stderr)
                return 1
            for key in totals:
                totals[key] += answer[key]
    print(f"accepted {totals['accepted']} {args.kind} row(s); {totals['derived']} daily IC value(s) computed")
    return 0


def _format_of(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def _chunks(data: bytes, fmt: str, size: int) -> Iterator[bytes]:
    """The body in pieces of about ``size`` bytes, split between rows (CSV pieces repeat the header)."""
    if fmt == "json" or len(data) <= size:
        yield data
        return
    if fmt == "ndjson":
        piece: list[bytes] = []
        used = 0
        for line in data.splitlines(keepends=True):
            if piece and used + len(line) > size:
                yield b"".join(piece)
                piece, used = [], 0
            piece.append(line)
            used += len(line)
        if piece:
            yield b"".join(piece)
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(f"not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    try:
        yield from _csv_pieces(reader, size)
    except csv.Error as exc:
        raise CommandError(f"CSV line {reader.line_num}: {exc}") from None


def _csv_pieces(reader: Iterator[list[str]], size: int) -> Iterator[bytes]:
    header = next(reader, [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    start = out.tell()
    for record in reader:
        writer.writerow(record)
        if out.tell() >= size:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            writer.writerow(header)
    if out.tell() > start:
        yield out.getvalue().encode()
