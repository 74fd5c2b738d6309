"""``alphawatch push-data {predictions,returns,portfolio,features} FILE|-``: send a file of model data.

The format comes from ``--format`` or the file name (``.csv``, ``.ndjson``/``.jsonl``, else JSON). CSV and NDJSON
files larger than ``--chunk-bytes`` go in several requests, split at row boundaries, a CSV's only where its date
changes unless one date takes more than twice ``--chunk-bytes`` (each request is all or nothing; the command
stops at the first refused one, names its rows by their place in the file, and says how many rows went before it).
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
    no_ic: list[dict[str, Any]] = []
    before = 0  # rows of the file in the requests sent so far
    with AlphawatchClient(url, token) as client:
        for number, (chunk, rows) in enumerate(chunks):
            try:
                answer = client.push_body(args.kind, chunk, CONTENT_TYPES[fmt])
            except RefusedError as exc:
                print(f"push-data: request {number + 1} {exc.reason}", file=sys.stderr)
                for item in exc.items[:20]:  # (the daemon counts the rows of its request, from 0)
                    row = before + item["index"] + 1
                    print(f"  row {row} of the file: {item['field'] or '-'}: {item['message']}", file=sys.stderr)
                if number:
                    print(f"  ({totals['accepted']} rows of earlier requests were stored)", file=sys.stderr)
                return 1
            except ClientError as exc:
                print(f"push-data: {exc}", file=sys.stderr)
                return 1
            for key in totals:
                totals[key] += answer[key]
            no_ic += answer.get("no_ic", [])
            before += rows
    print(f"accepted {totals['accepted']} {args.kind} row(s); {totals['derived']} daily IC value(s) computed")
    for gap in no_ic[:20]:
        print(f"warning: no IC for {gap['model']} on {gap['date']} ({gap['horizon']}): {gap['matched']} asset(s) "
              f"have both a prediction and a return, {gap['needed']} needed; are the asset codes written the same "
              "way in both files?", file=sys.stderr)  # fmt: skip
    return 0


def _format_of(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def _chunks(data: bytes, fmt: str, size: int) -> Iterator[tuple[bytes, int]]:
    """The body in pieces of about ``size`` bytes, split between rows (CSV pieces repeat the header), each with how
    many rows it holds. A CSV with a ``date`` column is split only where the date changes (a file in date order:
    a refused request then leaves no date half stored)."""
    if fmt == "json" or len(data) <= size:
        yield data, _rows_in(data, fmt)
        return
    if fmt == "ndjson":
        piece: list[bytes] = []
        used = 0
        for line in data.splitlines(keepends=True):
            if piece and used + len(line) > size:
                yield b"".join(piece), sum(1 for p in piece if p.strip())
                piece, used = [], 0
            piece.append(line)
            used += len(line)
        if piece:
            yield b"".join(piece), sum(1 for p in piece if p.strip())
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(f"not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    reader = csv.reader(io.StringIO(text), strict=True)  # as strict as the daemon, which reads it whole
    try:
        yield from _csv_pieces(reader, size)
    except csv.Error as exc:
        raise CommandError(f"CSV line {reader.line_num}: {exc}") from None


def _rows_in(data: bytes, fmt: str) -> int:
    """Rows of a body sent whole (for numbering a refused one's rows; a JSON body's are its items)."""
    if fmt == "csv":
        return max(len(data.splitlines()) - 1, 0)
    if fmt == "ndjson":
        return sum(1 for line in data.splitlines() if line.strip())
    return 0


def _csv_pieces(reader: Iterator[list[str]], size: int) -> Iterator[tuple[bytes, int]]:
    header = next(reader, [])
    lower = [h.strip().lower() for h in header]
    at = lower.index("date") if "date" in lower else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    start = out.tell()
    rows, full, last, split = 0, False, None, None
    for record in reader:
        day = record[at] if at is not None and at < len(record) else None
        over = out.tell() >= 2 * size  # one date bigger than twice the size: cut inside it after all
        if over and day == last and split != day:
            split = day
            print(f"push-data: the rows of {day} go in several requests (over twice --chunk-bytes): a refused one "
                  "would leave that date partly stored", file=sys.stderr)  # fmt: skip
        if (full and (at is None or day != last)) or over:
            yield out.getvalue().encode(), rows
            out.seek(0)
            out.truncate()
            writer.writerow(header)
            rows, full = 0, False
        writer.writerow(record)
        rows += 1
        last = day
        full = out.tell() >= size
    if out.tell() > start:
        yield out.getvalue().encode(), rows
