"""What a node client remembers: deliveries it handled, receipts not yet taken.

Two implementations of one small interface (:class:`ClientState`):

- :class:`MemoryState` (the default): nothing survives the process. The ids of the last
  :data:`MEMORY_DELIVERIES` handled deliveries are kept, enough to drop the copies the hub
  republishes after a crash of its own; receipts not yet taken are lost on exit (the hub
  keeps every receipt: ``vdx receipts query``).
- :class:`SqliteState` (a file path): survives restarts. A delivery handled before a crash
  is not handed to the handler again, a status 01 prepared before a crash is republished
  with the same bytes and message id (the hub drops the copy), and receipts acknowledged
  to the broker but not yet taken are still there.

A delivery goes through up to three recorded states:

- ``arriving``: its signed status 01 is stored (before it is published, and before the
  handler runs); the handler has not returned. A redelivery in this state is handed to
  the handler again (nothing says the document reached the agency's software), with the
  stored 01 published again rather than a new one.
- ``handled``: the handler returned but the 01 was not yet confirmed; the 01 is stored
  with it. A redelivery is not handed out again; the 01 is published again and the
  message acknowledged once it is confirmed.
- ``done``: the 01 (if any) was confirmed and the handler returned; the message is
  acknowledged, and a redelivery is acknowledged without being handed out.

The in-memory state forgets all three on exit: after a restart a delivery whose handler
had not finished gets a new 01 (other bytes, so the hub relays it too; the statuses'
order by meaning, :mod:`vdx.core.status_order`, keeps that harmless).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vdx.core.receipts import Receipt, parse_receipt

ARRIVING = "arriving"
HANDLED = "handled"
DONE = "done"
MEMORY_DELIVERIES = 100_000
MEMORY_RECEIPTS = 10_000
KEEP_DONE_DAYS = 30  # the hub republishes only recent deliveries (its outbox, after a crash)


@dataclass(frozen=True)
class SignedReceipt:
    """A hub receipt as it arrived: the parsed value and the signed bytes (keep these as
    evidence). ``hub_verified`` says whether the hub's signature was checked."""

    receipt: Receipt
    body: bytes = field(repr=False)
    hub_verified: bool


@dataclass(frozen=True)
class DeliveryRecord:
    state: str  # ARRIVING, HANDLED or DONE
    arrival_id: str | None = None  # message id of the status 01 prepared for it
    arrival_body: bytes | None = field(default=None, repr=False)


class ClientState(Protocol):
    def delivery(self, delivery_id: str) -> DeliveryRecord | None: ...

    def mark_arriving(self, delivery_id: str, arrival_id: str,
                      arrival_body: bytes) -> None: ...

    def mark_handled(self, delivery_id: str, arrival_id: str | None = None,
                     arrival_body: bytes | None = None) -> None: ...

    def mark_done(self, delivery_id: str) -> None: ...

    def add_receipt(self, item: SignedReceipt) -> bool:
        """Keep ``item``; False if a receipt with that id is kept already."""

    def receipts(self) -> list[SignedReceipt]:
        """Receipts not yet taken, oldest first."""

    def find_receipts(self, package_sha256: str) -> list[SignedReceipt]: ...

    def take_receipt(self, receipt_id: str) -> None: ...

    def close(self) -> None: ...


class MemoryState:
    """In-process state; see the module docstring for what it forgets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: OrderedDict[str, DeliveryRecord] = OrderedDict()
        self._receipts: OrderedDict[str, SignedReceipt] = OrderedDict()

    def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        with self._lock:
            return self._deliveries.get(delivery_id)

    def mark_arriving(self, delivery_id: str, arrival_id: str, arrival_body: bytes) -> None:
        self._put(delivery_id, DeliveryRecord(ARRIVING, arrival_id, arrival_body))

    def mark_handled(self, delivery_id: str, arrival_id: str | None = None,
                     arrival_body: bytes | None = None) -> None:
        self._put(delivery_id, DeliveryRecord(HANDLED, arrival_id, arrival_body))

    def mark_done(self, delivery_id: str) -> None:
        self._put(delivery_id, DeliveryRecord(DONE))

    def _put(self, delivery_id: str, record: DeliveryRecord) -> None:
        with self._lock:
            self._deliveries[delivery_id] = record
            self._deliveries.move_to_end(delivery_id)
            while len(self._deliveries) > MEMORY_DELIVERIES:
                self._deliveries.popitem(last=False)

    def add_receipt(self, item: SignedReceipt) -> bool:
        with self._lock:
            if item.receipt.receipt_id in self._receipts:
                return False
            self._receipts[item.receipt.receipt_id] = item
            while len(self._receipts) > MEMORY_RECEIPTS:  # nobody takes them: bound memory
                self._receipts.popitem(last=False)
            return True

    def receipts(self) -> list[SignedReceipt]:
        with self._lock:
            return list(self._receipts.values())

    def find_receipts(self, package_sha256: str) -> list[SignedReceipt]:
        with self._lock:
            return [r for r in self._receipts.values()
                    if r.receipt.package_sha256 == package_sha256]

    def take_receipt(self, receipt_id: str) -> None:
        with self._lock:
            self._receipts.pop(receipt_id, None)

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY, state TEXT NOT NULL, arrival_id TEXT, arrival_body BLOB,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY, package_sha256 TEXT NOT NULL, body BLOB NOT NULL,
    hub_verified INTEGER NOT NULL, arrived REAL NOT NULL);
CREATE INDEX IF NOT EXISTS receipts_by_sha ON receipts (package_sha256);
"""


class SqliteState:
    """State in one SQLite file (created if missing); every change is committed, with
    ``synchronous=FULL``, before the client acknowledges anything to the broker."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # One connection shared by the I/O thread (receipts) and the caller (deliveries).
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("DELETE FROM deliveries WHERE state = ? AND updated < ?",
                         (DONE, time.time() - KEEP_DONE_DAYS * 86400))

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        rows = self._run("SELECT state, arrival_id, arrival_body FROM deliveries "
                         "WHERE delivery_id = ?", (delivery_id,))
        return DeliveryRecord(*rows[0]) if rows else None

    def mark_arriving(self, delivery_id: str, arrival_id: str, arrival_body: bytes) -> None:
        self._run("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?)",
                  (delivery_id, ARRIVING, arrival_id, arrival_body, time.time()))

    def mark_handled(self, delivery_id: str, arrival_id: str | None = None,
                     arrival_body: bytes | None = None) -> None:
        self._run("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?)",
                  (delivery_id, HANDLED, arrival_id, arrival_body, time.time()))

    def mark_done(self, delivery_id: str) -> None:
        self._run("INSERT OR REPLACE INTO deliveries VALUES (?, ?, NULL, NULL, ?)",
                  (delivery_id, DONE, time.time()))

    def add_receipt(self, item: SignedReceipt) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?)",
                (item.receipt.receipt_id, item.receipt.package_sha256, item.body,
                 int(item.hub_verified), time.time()))
            return cursor.rowcount == 1

    def receipts(self) -> list[SignedReceipt]:
        return [_loaded(row) for row in self._run(
            "SELECT body, hub_verified FROM receipts ORDER BY arrived, rowid")]

    def find_receipts(self, package_sha256: str) -> list[SignedReceipt]:
        return [_loaded(row) for row in self._run(
            "SELECT body, hub_verified FROM receipts WHERE package_sha256 = ? "
            "ORDER BY arrived, rowid", (package_sha256,))]

    def take_receipt(self, receipt_id: str) -> None:
        self._run("DELETE FROM receipts WHERE receipt_id = ?", (receipt_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _loaded(row: tuple) -> SignedReceipt:
    body, verified = row
    # Checked (and, when verified, signature-checked) before it was stored.
    return SignedReceipt(parse_receipt(body), body, bool(verified))


def open_state(path: str | Path | None) -> ClientState:
    """:class:`SqliteState` for a path, :class:`MemoryState` for ``None``."""
    return MemoryState() if path is None else SqliteState(path)
