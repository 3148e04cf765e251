"""A batch's write transaction alone, through SQLAlchemy statement by statement and in
one PostgreSQL pipeline (``vdx.hub.journal.pipelined``), alternating in one run.

    python bench/bench_journal_write.py [--batches 1,10,30] [--rounds N] [--json FILE]

Each round writes what a worker's transaction writes for a batch of n 10 KB documents
while confirmations of the previous batch are carried: per document an inbound row, the
document, one delivery, two signed receipts (its ``accepted`` and the previous
document's ``delivered``), three outbox rows and two ledger entries; the previous
batch's outbox rows marked published and its deliveries claimed. The same round is
written by both paths in turn (alternating blocks of ten batches), in a fresh schema of the local
PostgreSQL (and SQLite in a temporary file, for reference: ``pipelined`` does nothing
there). Reported per batch: the median wall time, the median CPU time of this process
(the worker's share), and the pipelined ÷ plain ratios. Signing is a stand-in (a
hash): only the database work is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from tests.support.registry import database  # noqa: E402
from vdx.hub import journal  # noqa: E402
from vdx.hub.journal import (  # noqa: E402
    DeliveryRow,
    InboundRow,
    OutboxRow,
    ReceiptRow,
    utcnow,
)

BODY = b"x" * 10_240
RECEIPT = b"r" * 3_000
_serial = itertools.count()
BLOCK = 10


def _sign(digest: bytes) -> bytes:
    return hashlib.sha256(digest).digest() * 8  # 256 bytes, like an RSA-2048 signature


def write_batch(session: Session, n: int, previous: tuple[list[int], list[str]],
                ) -> tuple[list[int], list[str]]:
    """One batch as the worker writes it; returns its outbox ids and delivery ids (the
    next batch's confirmations)."""
    now = utcnow()
    outbox_ids, delivery_ids = previous
    journal.mark_published(session, outbox_ids, now)
    journal.claim_confirmations(session, delivery_ids, now)
    keys = [f"b{next(_serial)}" for _ in range(n)]
    journal.insert_rows(session, InboundRow, [
        {"key": key, "sha256": "a" * 64, "outcome": "accepted", "at": now} for key in keys])
    pks = journal.insert_documents(session, [
        {"kind": "document", "sender": "000.00.00.G22", "document_id": f"G22,{key}",
         "status_code": None, "business_type": 0, "refers_to": None, "sha256": "b" * 64,
         "message_id": f"m-{key}", "size": len(BODY), "received_at": now, "body": BODY}
        for key in keys])
    journal.insert_rows(session, DeliveryRow, [
        {"id": f"d-{key}", "document_pk": pk, "dedup_key": f"k-{key}", "kind": "document",
         "sender": "000.00.00.G22", "document_id": f"G22,{key}",
         "recipient": "000.00.00.H41", "created_at": now, "confirmed_at": None}
        for key, pk in zip(keys, pks, strict=True)])
    journal.insert_rows(session, ReceiptRow, [
        {"id": f"{kind}-{key}", "kind": kind, "addressee": "000.00.00.G22",
         "document_id": f"G22,{key}", "recipient": "000.00.00.H41", "delivery_id": None,
         "error_code": None, "status_code": None, "created_at": now, "body": RECEIPT}
        for key in keys for kind in ("accepted", "delivered")])
    new_outbox = journal.insert_returning_ids(session, OutboxRow, [
        {"delivery_id": delivery, "receipt_id": receipt, "routing_key": "000.00.00.H41",
         "created_at": now}
        for key in keys for delivery, receipt in (
            (f"d-{key}", None), (None, f"accepted-{key}"), (None, f"delivered-{key}"))])
    journal.append_ledger(session, journal.lock_ledger_head(session), [
        {"kind": kind, "document_id": f"G22,{key}", "sender": "000.00.00.G22",
         "recipient": "000.00.00.H41", "receipt_id": f"{kind}-{key}",
         "receipt_sha256": "c" * 64, "created_at": now}
        for key in keys for kind in ("accepted", "delivered")], _sign)
    return new_outbox, [f"d-{key}" for key in keys]


def measure(backend: str, sizes: list[int], rounds: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as engine:
        sessions = sessionmaker(engine)
        previous: dict[bool, tuple[list[int], list[str]]] = {False: ([], []), True: ([], [])}
        for n in sizes:
            samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            # Blocks of ten batches per path, alternating: one batch right after the other
            # path's measured a bias of its own (SQLite: 13 against 19 ms, the same code).
            for block in range(2 * (rounds // BLOCK) + 2):  # the first two warm up
                piped = bool(block % 2)
                for _ in range(BLOCK):
                    wall, cpu = time.perf_counter(), time.process_time()
                    with sessions.begin() as session, (
                            journal.pipelined(session) if piped else nullcontext()):
                        previous[piped] = write_batch(session, n, previous[piped])
                    if block >= 2:
                        samples[piped].append((time.perf_counter() - wall,
                                               time.process_time() - cpu))
            row = {"database": backend, "documents": n}
            for piped, name in ((False, "plain"), (True, "pipelined")):
                row[f"{name}_ms"] = 1000 * statistics.median(w for w, _ in samples[piped])
                row[f"{name}_cpu_ms"] = 1000 * statistics.median(c for _, c in samples[piped])
            row["wall_ratio"] = row["pipelined_ms"] / row["plain_ms"]
            row["cpu_ratio"] = row["pipelined_cpu_ms"] / row["plain_cpu_ms"]
            results.append(row)
            print(f"  {backend} n={n}: plain {row['plain_ms']:.2f} ms "
                  f"({row['plain_cpu_ms']:.2f} CPU), pipelined {row['pipelined_ms']:.2f} ms "
                  f"({row['pipelined_cpu_ms']:.2f} CPU)", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,10,30",
                        help="documents per batch, comma-separated (default 1,10,30)")
    parser.add_argument("--rounds", type=int, default=200,
                        help="batches written by each path per size (default 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    try:
        sizes = [int(size) for size in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches: not a list of numbers: {args.batches!r}")
    rows = [row for backend in ("postgresql", "sqlite")
            for row in measure(backend, sizes, args.rounds)]
    print("| database | documents | plain ms | pipelined ms | ÷ | plain CPU ms "
          "| pipelined CPU ms | ÷ |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['database']} | {r['documents']} | {r['plain_ms']:.2f} | "
              f"{r['pipelined_ms']:.2f} | {r['wall_ratio']:.2f} | {r['plain_cpu_ms']:.2f} | "
              f"{r['pipelined_cpu_ms']:.2f} | {r['cpu_ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
