"""The folder bridge: a node's packages in and out through plain folders.

For agency software that can only read and write files. Under one folder ``DIR``:

``outbox/``
    Drop a package here (write it elsewhere or under a name starting with ``.``, then
    rename it in: a file is taken as it is when seen). It is checked locally (edXML schema,
    sender = this node, signed, or signed by the bridge when it has the node's key: a
    placeholder signature, which legacy software writes, is replaced by the bridge's),
    journaled, then published to the hub. It stays here until the hub answers.
``sent/``
    Packages the hub accepted (or already had: ``duplicate``), as dropped; the report
    line says when the bridge signed what it sent.
``failed/``
    Packages refused, each with ``<name>.error.json`` saying why: the hub's error code
    and message (``"stage": "hub"``, with ``"signed_by_bridge"``), or the local check
    that failed (``"stage": "local"``).
``inbox/``
    Documents and statuses delivered to this node, verified end to end, as
    ``<kind>-<sender>-<delivery id>.xml``. Status 01 (arrived) goes back automatically.
``receipts/``
    Every hub receipt, signed, as ``<issued>-<kind>-<receipt id>.xml``.
``.vdx/``
    The bridge's state (outbox journal, delivery log, receipts not yet written) and its
    temporary files. Do not touch.

Nothing is lost if the bridge is killed at any moment: a package is journaled with the
exact bytes and message id before it is published and republished after a restart (the
hub drops a copy of a message id it has), it leaves ``outbox/`` only after the hub's
answer is written to ``receipts/``, a delivery is acknowledged only after its file is on
disk, and deliveries and receipts are deduplicated by their ids across restarts.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISDIR

from cryptography import x509
from vdx_adapters.folder.state import (
    NEW,
    Entry,
    Journal,
    NotRegularFile,
    free_name,
    move,
    private_file,
    read_regular,
    write_atomic,
)

from vdx.client.node import Delivery, NodeClient, RefusedDelivery, SignedReceipt, Submission
from vdx.core.envelope import check
from vdx.core.quirks import placeholder_signatures
from vdx.core.xmlsafe import parse_untrusted
from vdx.errors import TransportError
from vdx.xmldsig.sign import DS_SIGNATURE, Signer
from vdx.xmldsig.trust import TrustStore

FOLDERS = ("outbox", "sent", "failed", "inbox", "receipts")
FINAL_KINDS = frozenset({"accepted", "rejected", "duplicate"})
BATCH = 500  # new outbox files per round: bounds memory, lets receipts and deliveries in
# Names agency software uses while it is still writing a file.
_UNFINISHED = (".tmp", ".part", ".partial", ".crdownload", ".swp")


@dataclass(frozen=True)
class BridgeConfig:
    """What one bridge needs. ``signer`` (the node's key) signs unsigned packages and the
    automatic status 01; ``trust`` verifies what arrives; ``hub_certificate`` makes
    every receipt's signature checked. ``settle``: outbox files modified less than this
    many seconds ago are left for the next scan (loop mode only)."""

    node: str
    root: Path
    amqp_url: str = field(repr=False)
    trust: TrustStore
    signer: Signer | None = None
    hub_certificate: x509.Certificate | None = None
    poll: float = 1.0
    settle: float = 0.5
    wait: float = 30.0  # --once: how long to wait for the hub's answers


@dataclass
class Summary:
    sent: int = 0
    failed: int = 0
    received: int = 0
    receipts: int = 0
    waiting: int = 0  # still in outbox/, waiting for the hub's answer

    def line(self) -> str:
        return (f"{self.sent} sent, {self.failed} failed, {self.received} received, "
                f"{self.receipts} receipts; {self.waiting} waiting for the hub")


class LocalRefusal(Exception):
    """A package the bridge will not send; ``code`` is from the error catalogue."""

    def __init__(self, code: str, message: str, problems: list[dict] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.problems = code, message, problems or []


class FolderBridge:
    """Runs the bridge for one node and folder (see the module docstring)."""

    def __init__(self, config: BridgeConfig, *, report: Callable[[str], None] = print,
                 client_factory: Callable[..., NodeClient] = NodeClient) -> None:
        self.config = config
        self.report = report
        self.root = config.root
        self.dirs = {name: self.root / name for name in FOLDERS}
        self.private = self.root / ".vdx"
        self.tmp = self.private / "tmp"
        self.summary = Summary()
        self._client_factory = client_factory
        self._client: NodeClient | None = None
        self._journal: Journal | None = None
        self._in_flight: dict[str, Submission] = {}
        self._stopping = False

    # ------------------------------------------------------------------ running

    def run(self, *, once: bool = False) -> Summary:
        """Serve until :meth:`stop` or, with ``once``, until what is there is done."""
        for directory in (self.root, *self.dirs.values(), self.private, self.tmp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.private.chmod(0o700)  # package bodies and state: the bridge's own
        for leftover in self.tmp.iterdir():  # partial writes of a killed run
            leftover.unlink(missing_ok=True)
        for database in ("outbox.db", "client.db"):
            private_file(self.private / database)
        self._journal = Journal(self.private / "outbox.db")
        client = self._client_factory(
            self.config.amqp_url, self.config.node, signer=self.config.signer,
            trust=self.config.trust, hub_certificate=self.config.hub_certificate,
            state=self.private / "client.db", auto_arrival=self.config.signer is not None,
            on_refused=self._refused)
        try:
            with client:
                self._client = client
                self.report(f"{self.config.node}: connected; watching {self.root}")
                if once:
                    self._run_once()
                else:
                    while not self._stopping:
                        self.step(settle=self.config.settle, wait=self.config.poll)
            self.summary.waiting = len(self._open_entries())
        finally:
            self._client = None
            self._journal.close()
            self._journal = None
            self._in_flight.clear()
        return self.summary

    def stop(self) -> None:
        """Finish the step in hand and return from :meth:`run` (signal handlers)."""
        self._stopping = True
        if self._client is not None:
            self._client.stop()

    def step(self, *, settle: float, wait: float) -> int:
        """One round: send what is in outbox/, file receipts, take deliveries (waiting
        up to ``wait`` seconds for one). Returns how many things happened."""
        done = self.submit_outbox(settle)
        done += self.collect_receipts()
        done += self.take_deliveries(wait)
        return done + self.collect_receipts()

    def _run_once(self) -> None:
        deadline = time.monotonic() + self.config.wait
        self.submit_outbox(settle=0.0)
        while not self._stopping:
            busy = self.collect_receipts() + self.take_deliveries(0.5)
            if not busy and not self._open_entries():
                break
            if time.monotonic() > deadline:
                waiting = len(self._open_entries())
                if waiting:
                    self.report(f"{waiting} package(s) still wait for the hub's answer; "
                                f"they stay in outbox/ for the next run")
                break
            if not busy:
                self.submit_outbox(settle=0.0)  # republish what the broker did not confirm

    # ------------------------------------------------------------------ sending

    def submit_outbox(self, settle: float = 0.0) -> int:
        """Check, journal and publish new files of outbox/ (and republish journaled
        ones the broker has not confirmed); returns how many were handled."""
        assert self._client is not None and self._journal is not None
        handled = 0
        for entry in self._journal.open_entries(NEW):
            if entry.message_id not in self._in_flight:
                self._publish(entry)
        for path in self._outbox_files(settle)[:BATCH]:
            try:
                data = read_regular(path)
            except NotRegularFile as exc:
                handled += 1
                self._fail(path, {"stage": "local", "code": "folder.not_a_file",
                                  "message": str(exc), "problems": []})
                continue
            except OSError:
                continue  # removed meanwhile, or not readable yet: next scan
            file_sha = _sha256(data)
            if self._journal.open_entry(path.name, file_sha) is not None:
                continue  # sent already, waiting for the hub's answer
            handled += 1
            try:
                body = self._prepare(data)
            except LocalRefusal as refusal:
                self._fail(path, {"stage": "local", "code": refusal.code,
                                  "message": refusal.message, "problems": refusal.problems})
                continue
            entry = Entry(str(uuid.uuid4()), path.name, file_sha, _sha256(body), body)
            self._journal.add(entry)  # before publishing: a crash now republishes it
            self._publish(entry)
        self._confirm()
        return handled

    def _outbox_files(self, settle: float) -> list[Path]:
        now = time.time()
        found = []
        for path in sorted(self.dirs["outbox"].iterdir()):
            if path.name.startswith(".") or path.name.endswith(_UNFINISHED):
                continue
            try:
                stat = path.lstat()  # a symbolic link is judged itself, never followed
            except OSError:
                continue
            if not S_ISDIR(stat.st_mode) and now - stat.st_mtime >= settle:
                found.append(path)
        return found

    def _prepare(self, data: bytes) -> bytes:
        """The bytes to send for a dropped file, or :class:`LocalRefusal`."""
        verdict = check(data)
        if not verdict.valid or verdict.package is None:
            first = verdict.problems[0]
            raise LocalRefusal(first.code, first.message,
                               [p.to_dict() for p in verdict.problems])
        sender = verdict.package.sender.organ_id
        if sender != self.config.node:
            raise LocalRefusal("routing.sender_mismatch",
                               f"the package is from {sender}; this bridge sends for "
                               f"{self.config.node}")
        root = parse_untrusted(data).getroot()
        if next(root.iter(DS_SIGNATURE), None) is not None:
            return data
        if self.config.signer is None:
            if placeholder_signatures(root):
                raise LocalRefusal("signature.placeholder", "the package carries only a "
                                   "placeholder signature and the bridge has no key to sign "
                                   "it (--key and --cert)")
            raise LocalRefusal("signature.missing", "the package is not signed and the "
                               "bridge has no key to sign it (--key and --cert)")
        return self.config.signer.sign(data)  # in place of a placeholder, if there is one

    def _publish(self, entry: Entry) -> None:
        assert self._client is not None
        self._in_flight[entry.message_id] = self._client.send(
            entry.body, wait=False, message_id=entry.message_id)

    def _confirm(self) -> None:
        assert self._client is not None and self._journal is not None
        if not self._in_flight:
            return
        try:
            self._client.flush(timeout=self.config.poll * 5)
        except TransportError as exc:
            self.report(f"waiting for the broker: {exc.message}")
        for message_id, submission in list(self._in_flight.items()):
            if submission.confirmed:
                self._journal.mark_published(message_id)
                del self._in_flight[message_id]
            elif submission.refused:
                del self._in_flight[message_id]  # refused: published again next round

    # ------------------------------------------------------------------ receipts

    def collect_receipts(self, timeout: float = 0.0) -> int:
        """Write receipts to receipts/ and settle the outbox files they answer."""
        assert self._client is not None and self._journal is not None
        count = 0
        for item in self._client.receipts(timeout=timeout):
            receipt = item.receipt
            path = write_atomic(self.dirs["receipts"], _receipt_name(item), item.body, self.tmp)
            count += 1
            self.summary.receipts += 1
            if receipt.kind in FINAL_KINDS:
                for entry in self._journal.by_sha256(receipt.package_sha256):
                    self._settle(entry, item, path)
        return count

    def _settle(self, entry: Entry, item: SignedReceipt, receipt_path: Path) -> None:
        assert self._journal is not None
        receipt = item.receipt
        source = self.dirs["outbox"] / entry.name
        # Moved already (a crash after the move), or replaced by a new file of that name:
        # either way the file there is not this package any more.
        present = _sha256_of_regular(source) == entry.file_sha256
        # The bridge changes what it sends only by signing it.
        signed_here = entry.sha256 != entry.file_sha256
        if receipt.kind == "rejected" and receipt.rejection is not None:
            j = receipt.rejection
            if present:
                self._fail(source, {
                    "stage": "hub", "code": j.code, "message": j.message_en,
                    "message_vi": j.message_vi, "detail": j.detail, "line": j.line,
                    "path": j.path, "receipt_id": receipt.receipt_id,
                    "receipt_file": str(receipt_path.relative_to(self.root)),
                    "message_id": entry.message_id, "package_sha256": receipt.package_sha256,
                    "signed_by_bridge": signed_here})
        elif present:
            target = move(source, self.dirs["sent"])
            self.summary.sent += 1
            signed = ", signed by the bridge" if signed_here else ""
            self.report(f"sent     {entry.name} -> sent/{target.name} ({receipt.kind}{signed}, "
                        f"receipt {receipt_path.name})")
        self._journal.mark_done(entry.message_id, receipt.kind)

    def _fail(self, path: Path, why: dict) -> None:
        target = free_name(self.dirs["failed"], path.name)
        why = {"file": path.name, **why, "at": datetime.now(UTC).isoformat()}
        # The explanation first: a crash before the move leaves the file in outbox/,
        # and the next run writes the same explanation again.
        write_atomic(self.dirs["failed"], f"{target.name}.error.json",
                     json.dumps(why, ensure_ascii=False, indent=2).encode(), self.tmp)
        move(path, self.dirs["failed"], target.name)
        self.summary.failed += 1
        self.report(f"failed   {path.name} -> failed/{target.name} ({why['stage']}: "
                    f"{why['code']}: {why['message']})")

    def _open_entries(self) -> list[Entry]:
        return self._journal.open_entries() if self._journal is not None else []

    # ------------------------------------------------------------------ receiving

    def take_deliveries(self, wait: float, limit: int = 200) -> int:
        """Write deliveries to inbox/ (acknowledged once each file is on disk)."""
        assert self._client is not None
        count = 0
        for delivery in self._client.deliveries(timeout=wait, limit=limit):
            self._write_delivery(delivery)
            count += 1
        return count

    def _write_delivery(self, delivery: Delivery) -> None:
        name = f"{delivery.kind}-{delivery.sender}-{delivery.delivery_id}.xml"
        write_atomic(self.dirs["inbox"], name, delivery.body, self.tmp)
        self.summary.received += 1
        what = (f"status {delivery.status_code}" if delivery.kind == "status"
                else "document")
        self.report(f"received {what} {delivery.document_id} from {delivery.sender} "
                    f"-> inbox/{name}")

    def _refused(self, refused: RefusedDelivery) -> None:
        self.report(f"refused  delivery {refused.delivery_id} from {refused.sender}: "
                    f"{refused.code}: {refused.message} (dead-lettered, not written)")


def _receipt_name(item: SignedReceipt) -> str:
    r = item.receipt
    return f"{r.issued_at:%Y%m%dT%H%M%S}Z-{r.kind}-{r.receipt_id}.xml"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_of_regular(path: Path) -> str | None:
    try:
        return _sha256(read_regular(path))
    except OSError:
        return None

