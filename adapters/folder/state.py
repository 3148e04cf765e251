"""The folder bridge's durable pieces: its outbox journal and crash-safe file moves.

The journal (SQLite, ``synchronous=FULL``) records every package the bridge decided to
send *before* it is published: the exact bytes (signed by the bridge, if it signed them)
and the message id. After a crash the bridge publishes unconfirmed entries again with
the same bytes and message id, which the hub recognises and drops if it already has
them; an entry stays open until the hub's final receipt moved its file out of
``outbox/``.

Files appear in a folder only complete: written to ``.vdx/tmp`` on the same file system,
flushed to disk, renamed into place, and the folder itself flushed. Every file the bridge
writes (packages, receipts, its databases) is readable by its owner only (0600), and an
outbox entry is read only if it is a regular file itself, never through a symbolic link.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

NEW = "new"  # journaled, not yet confirmed by the broker
PUBLISHED = "published"  # the broker has it; waiting for the hub's receipt
DONE = "done"  # the file was moved to sent/ or failed/


@dataclass(frozen=True)
class Entry:
    message_id: str
    name: str  # the file's name in outbox/
    file_sha256: str  # of the file as dropped
    sha256: str  # of the bytes sent (what receipts name)
    body: bytes = field(repr=False)
    state: str = NEW


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outgoing (
    message_id TEXT PRIMARY KEY, name TEXT NOT NULL, file_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL, body BLOB, state TEXT NOT NULL, outcome TEXT,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS outgoing_by_sha ON outgoing (sha256);
CREATE INDEX IF NOT EXISTS outgoing_by_name ON outgoing (name, file_sha256);
"""
_COLUMNS = "message_id, name, file_sha256, sha256, body, state"


class Journal:
    """The outbox journal in one SQLite file; every call commits before it returns."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def add(self, entry: Entry) -> None:
        now = time.time()
        self._run(f"INSERT INTO outgoing ({_COLUMNS}, created, updated) "
                  f"VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (entry.message_id, entry.name, entry.file_sha256, entry.sha256, entry.body,
                   entry.state, now, now))

    def open_entry(self, name: str, file_sha256: str) -> Entry | None:
        """The entry still waiting for this very file, if any."""
        rows = self._run(f"SELECT {_COLUMNS} FROM outgoing WHERE name = ? AND "
                         f"file_sha256 = ? AND state != ?", (name, file_sha256, DONE))
        return Entry(*rows[0]) if rows else None

    def open_entries(self, state: str | None = None) -> list[Entry]:
        if state is None:
            rows = self._run(f"SELECT {_COLUMNS} FROM outgoing WHERE state != ? "
                             f"ORDER BY created", (DONE,))
        else:
            rows = self._run(f"SELECT {_COLUMNS} FROM outgoing WHERE state = ? "
                             f"ORDER BY created", (state,))
        return [Entry(*row) for row in rows]

    def by_sha256(self, sha256: str) -> list[Entry]:
        return [Entry(*row) for row in self._run(
            f"SELECT {_COLUMNS} FROM outgoing WHERE sha256 = ? AND state != ?", (sha256, DONE))]

    def mark_published(self, message_id: str) -> None:
        self._run("UPDATE outgoing SET state = ?, updated = ? WHERE message_id = ? "
                  "AND state = ?", (PUBLISHED, time.time(), message_id, NEW))

    def mark_done(self, message_id: str, outcome: str) -> None:
        # The bytes are in sent/ or failed/ now (and the hub has them): drop our copy.
        self._run("UPDATE outgoing SET state = ?, outcome = ?, body = NULL, updated = ? "
                  "WHERE message_id = ?", (DONE, outcome, time.time(), message_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NotRegularFile(OSError):
    """An outbox entry that is a symbolic link, a FIFO, a device…: never read."""


def read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file itself (a symbolic link is refused,
    not followed, and a FIFO is never waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(f"{path.name} is a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path.name} is not a regular file "
                                 f"({stat.filemode(mode)[0]})")
        return f.read()


def private_file(path: Path) -> None:
    """Create ``path`` empty if it is missing; either way readable by its owner only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    path.chmod(0o600)


def write_atomic(directory: Path, name: str, data: bytes, tmp_dir: Path) -> Path:
    """Write ``directory/name`` (mode 0600) so that it is either absent or complete and
    on disk."""
    target = directory / name
    tmp = tmp_dir / f"{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(directory)
    return target


def move(source: Path, directory: Path, name: str | None = None) -> Path:
    """Rename ``source`` into ``directory`` (same file system), keeping any file there:
    a name in use gets a numbered suffix. Both folders are flushed."""
    target = free_name(directory, name or source.name)
    os.replace(source, target)
    fsync_dir(directory)
    fsync_dir(source.parent)
    return target


def free_name(directory: Path, name: str) -> Path:
    target = directory / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    number = 1
    while os.path.lexists(target):
        number += 1
        target = directory / (f"{stem}.{number}.{suffix}" if suffix else f"{stem}.{number}")
    return target


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: flush the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
