"""The Python SDK: one agency node's connection to the hub.

A :class:`NodeClient` logs in to the broker with the node's own account (the broker user
*is* the agency code, see :mod:`vdx.broker.provision`), sends packages to ``vdx.submit`` and
reads the node's inbox, where the hub puts documents and statuses, and its receipts queue.

Example (a hub is running, ``000.00.00.H41`` and ``000.00.00.G22`` are registered, and the
node's broker URL, key and certificate are where the example reads them)::

    import os
    from datetime import date

    from vdx.core import model
    from vdx.client.node import NodeClient
    from vdx.xmldsig.sign import Signer
    from vdx.xmldsig.trust import TrustStore

    signer = Signer.from_files("pki/agencies/000.00.00.H41.key",
                               "pki/agencies/000.00.00.H41.pem")
    document = model.DocumentPackage(
        sender=model.Organization("000.00.00.H41"),
        recipients=(model.Organization("000.00.00.G22"),),
        document_id="000.00.00.H41,2026/11/22,15/UBND-VP", code=model.Code("15", "UBND-VP"),
        promulgation=model.PromulgationInfo("Nghệ An", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="Về việc báo cáo",
        signer=model.SignerInfo("Nguyễn Văn A"))

    with NodeClient(os.environ["VDX_NODE_AMQP_URL"], "000.00.00.H41", signer=signer,
                    trust=TrustStore.from_dir("pki"), state="h41-client.db") as client:
        submission = client.send(document)                 # built, signed, confirmed
        receipt = client.wait_for_receipt(submission, timeout=30)
        print(receipt.kind, receipt.error_code)            # accepted None
        for delivery in client.deliveries(timeout=5):      # verified end to end
            print(delivery.sender, delivery.document_id)   # hand it to the DMS here;
            if delivery.kind == "document":                # acknowledged once this returns
                for attachment in delivery.package.attachments:
                    print(attachment.name, len(attachment.data))  # the decoded bytes
                client.send_status(delivery, "03")         # after the automatic 01

What a caller may rely on:

- **Sending.** :meth:`NodeClient.send` publishes persistently with the node's code as
  ``user_id`` and a fresh message id, and returns once the broker confirmed it
  (``wait=False`` returns at once; :meth:`NodeClient.send_many` and
  :meth:`NodeClient.flush` pipeline the confirms). Retrying with the same ``message_id``
  is safe: the hub drops a message id it already journaled.
- **Receipts** are read as they arrive, whatever the caller is doing, checked (and with
  ``hub_certificate``, signature-verified), kept in the client's state, then
  acknowledged. :meth:`NodeClient.wait_for_receipt` finds the ``accepted``, ``rejected``
  or ``duplicate`` receipt of a submission: the hub derives its id from the message
  (:func:`vdx.core.receipts.answer_id`), so a resend gets its own answer (from an older
  hub, whose ids are random, the first one for the same SHA-256);
  :meth:`NodeClient.receipts` hands out every receipt once.
- **Deliveries** (:meth:`NodeClient.deliveries`, :meth:`NodeClient.run`) are verified end
  to end (:func:`vdx.client.checks.verify_delivery`); one that fails is dead-lettered, never
  handed out. A document is answered with status 01 (arrived), signed with the node's
  key, *before* the handler sees it, so a status the handler sends (03…) follows it; a
  delivery gets one 01, also when it is handed out again. Each is acknowledged only
  after the handler returned and its 01 was confirmed (an exception puts it back on the
  queue), and never handed out again once its handler returned (see
  :mod:`vdx.client.state` for the crash cases and what the default in-memory state
  forgets). A handler that did not return (a crash) sees the delivery again, with
  ``redelivered`` set: make it idempotent on :attr:`Delivery.delivery_id`.
- **Attachments** come decoded (``delivery.package.attachments[i].data``), read from the
  verified tree, the one parse of the body. A delivery therefore holds its package about
  1.75 times (the signed body, kept as evidence, and the decoded attachments, 3/4 of their
  base64), and reading one peaks at about twice its size on top of the body (the parsed
  tree and the decoded bytes; measured: 53 MiB, 240 ms for a 26.7 MiB package of four
  5 MiB attachments, against 35 MiB, 175 ms undecoded). ``attachment_data=False`` skips
  the decoding for a recipient that keeps only the body.
- The connection is re-established with backoff (trying each broker address in turn);
  unconfirmed messages are published again with the same message id. A message the
  broker could not route (no queue bound) counts as refused, like a publisher nack.

The broker holds at most ``prefetch`` unacknowledged deliveries for the client; receipts
come from a queue of their own on a channel of their own and never stay unacknowledged,
so a client that does not read its deliveries still receives its receipts. (Against a hub
whose `vdx init` has not yet given the node a receipts queue, receipts come in the inbox,
behind any ``prefetch`` deliveries waiting to be handled.)
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography import x509

from vdx import __version__
from vdx.broker import wire
from vdx.broker.channel import addresses, vhost_of
from vdx.broker.link import Link, Publication
from vdx.broker.wire import Incoming, inbox_queue, node_account, receipts_queue
from vdx.client.checks import compile_schemas, verify_delivery, verify_receipt
from vdx.client.state import (
    ARRIVING,
    DONE,
    ClientState,
    DeliveryRecord,
    SignedReceipt,
    open_state,
)
from vdx.core.envelope import build
from vdx.core.model import (
    STATUS_CODES,
    STATUS_MEANINGS,
    VIETNAM_TZ,
    DocumentPackage,
    Organization,
    Package,
    ResponseFor,
    StaffInfo,
    StatusPackage,
)
from vdx.core.receipts import ANSWER_KINDS, Receipt, answers
from vdx.errors import TransportError, VdxError
from vdx.xmldsig.sign import Signer
from vdx.xmldsig.trust import TrustStore
from vdx.xmldsig.verify import DEFAULT_POLICY, VerificationPolicy, Verifier

__all__ = ["Delivery", "NodeClient", "RefusedDelivery", "SignedReceipt", "Submission"]

log = logging.getLogger("vdx.client")

FINAL_KINDS = ANSWER_KINDS
CLIENT = f"vdx-sdk/{__version__}"  # what the SDK's submissions say they come from
DEFAULT_STAFF = StaffInfo("Văn thư", "Hệ thống VDX")
_POLL = 0.2  # how often blocking loops look at stop()


@dataclass(frozen=True)
class Submission:
    """A package handed to the broker. ``sha256`` (of the exact bytes sent) is what the
    hub's receipts name; ``kind`` and ``document_id`` are known when the package was sent
    as a value (``None`` for bytes)."""

    message_id: str
    sha256: str
    size: int
    kind: str | None = None
    document_id: str | None = None
    _publication: Publication | None = field(default=None, repr=False, compare=False)

    @property
    def confirmed(self) -> bool:
        """The broker took responsibility for it (durably queued for the hub)."""
        return self._publication is not None and self._publication.ok

    @property
    def refused(self) -> str | None:
        """Why the broker refused it, if it did (sending it again is safe)."""
        return self._publication.error if self._publication is not None else None


@dataclass(frozen=True)
class Delivery:
    """A document or status the hub delivered, after its signature verified.

    ``package`` was read from the signed content only, its attachments with their decoded
    bytes (empty with ``NodeClient(attachment_data=False)``); ``body`` is the signed
    package as the sender made it (keep it as evidence). ``signer`` is the verified
    certificate's subject; ``received_at`` is when the hub received it (ISO 8601, from
    the hub).
    """

    delivery_id: str
    kind: str  # "document" or "status"
    sender: str
    document_id: str
    package: Package = field(repr=False)
    body: bytes = field(repr=False)
    signer: str
    received_at: str | None = None
    redelivered: bool = False

    @property
    def status_code(self) -> str | None:
        return self.package.status_code if isinstance(self.package, StatusPackage) else None


@dataclass(frozen=True)
class RefusedDelivery:
    """A delivery that failed end-to-end verification (it was dead-lettered)."""

    delivery_id: str
    sender: str | None
    code: str
    message: str


class NodeClient:
    """One node's connection to the hub; see the module docstring for an example.

    ``amqp_url`` holds the node's broker credentials (:attr:`vdx.broker.provision.Credentials.
    amqp_url`; the nodes of a broker cluster as several URLs separated by commas, tried in
    turn); ``code`` is its agency code. ``signer`` signs packages given as values,
    statuses and the automatic status 01. ``trust`` (a :class:`~vdx.xmldsig.trust.TrustStore` or
    a ready :class:`~vdx.xmldsig.verify.Verifier`) is required to receive. ``hub_certificate``
    makes every receipt's signature checked. ``state`` is a SQLite file path for durable
    deduplication and receipts, or ``None`` for in-memory state (:mod:`vdx.client.state`).
    ``on_refused`` is told about deliveries that failed verification. ``auto_arrival``
    sends status 01 for each delivered document (with ``signer``); ``attachment_data=False``
    leaves delivered attachments undecoded (``data`` empty), for a recipient that keeps
    only :attr:`Delivery.body`.

    Methods may be called from several threads; :meth:`deliveries` and :meth:`run` are
    meant for one receiving thread.
    """

    def __init__(self, amqp_url: str, code: str, *, signer: Signer | None = None,
                 trust: TrustStore | Verifier | None = None,
                 hub_certificate: x509.Certificate | None = None,
                 state: str | Path | ClientState | None = None,
                 policy: VerificationPolicy = DEFAULT_POLICY, auto_arrival: bool = True,
                 attachment_data: bool = True,
                 staff: StaffInfo = DEFAULT_STAFF, prefetch: int = 64,
                 connect_timeout: float = 15.0, confirm_timeout: float = 30.0,
                 on_refused: Callable[[RefusedDelivery], None] | None = None) -> None:
        # The broker stamps the login on every message as user_id, and the hub accepts a
        # node's packages only under the node's own account: CODE (default vhost, or a
        # registry from before accounts were named per vhost) or CODE@VHOST. Every
        # address (the nodes of a cluster) must log in as that account.
        accounts = set()
        for address in addresses(amqp_url):
            username = urlsplit(address).username
            account = unquote(username) if username is not None else code
            if account not in (code, node_account(code, vhost_of(address))):
                raise ValueError(f"the broker URL logs in as {account!r}, not as node "
                                 f"{code!r}; use the node's own credentials")
            accounts.add(account)
        if len(accounts) > 1:
            raise ValueError(f"the broker URLs log in as {', '.join(sorted(accounts))}: "
                             f"give node {code!r} one account on every address")
        self.account = accounts.pop()
        self.code = code
        self.signer = signer
        self.staff = staff
        self.hub_certificate = hub_certificate
        self.auto_arrival = auto_arrival
        self.attachment_data = attachment_data
        self.prefetch = prefetch
        self._verifier = trust if isinstance(trust, Verifier) or trust is None \
            else Verifier(trust, policy)
        self._state: ClientState = (open_state(state) if state is None
                                    or isinstance(state, str | Path) else state)
        self._connect_timeout = connect_timeout
        self._confirm_timeout = confirm_timeout
        self._on_refused = on_refused
        self._incoming: queue.Queue[tuple[int, Incoming]] = queue.Queue()
        self._receipts_changed = threading.Condition()
        # delivery id -> its status 01, from publication until the delivery is acknowledged
        self._arrivals: dict[str, Publication] = {}
        self._unflushed: list[Publication] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = False
        self._link = Link(amqp_url, queues=(inbox_queue(code),), prefetch=prefetch,
                          on_message=self._on_message, name=f"vdx-client-{code}")
        # Receipts on a channel of their own, so deliveries waiting to be handled never
        # hold them up; followed, so that a registry whose receipts queue `vdx init` has
        # not added yet (the hub then puts receipts in the inbox) only logs a refusal.
        self._receipts_queue = receipts_queue(code)
        self._link.follow((self._receipts_queue,))

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> NodeClient:
        """Connect now (otherwise the first call that needs the broker does). Raises
        :class:`~vdx.errors.TransportError` if the broker cannot be reached in
        ``connect_timeout`` seconds or refuses the login."""
        with self._lock:
            if not self._connected:
                compile_schemas()  # before the I/O thread exists: see its docstring
                self._link.start(self._connect_timeout)
                self._connected = True
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for unconfirmed messages, then disconnect.
        Deliveries not yet handled go back to the queue."""
        self._stop.set()
        if self._connected:
            deadline = time.monotonic() + timeout
            while self._link.unconfirmed and time.monotonic() < deadline:
                time.sleep(0.02)
            self._link.stop()
        self._state.close()

    def __enter__(self) -> NodeClient:
        return self.connect()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Make :meth:`deliveries`, :meth:`receipts` and :meth:`run` return soon
        (thread-safe; for signal handlers)."""
        self._stop.set()

    # ------------------------------------------------------------------ sending

    def send(self, package: bytes | DocumentPackage | StatusPackage, *,
             signer: Signer | None = None, wait: bool = True,
             message_id: str | None = None) -> Submission:
        """Send ``package`` to the hub and return its :class:`Submission`.

        A value is built and signed (with ``signer`` or the client's); bytes are sent as
        they are, unless ``signer`` is given, which then signs them (they must be
        unsigned). With ``wait`` (the default) this returns once the broker confirmed the
        message and raises :class:`~vdx.errors.TransportError` if it refused it or did
        not confirm within ``confirm_timeout`` (the message then stays queued in the
        client and is published again on reconnect). Without ``wait``, see :meth:`flush`.
        Give ``message_id`` to make a retry after a crash recognisable to the hub.
        """
        body = self._prepare(package, signer)
        self.connect()
        message_id = message_id or str(uuid.uuid4())
        kind, document_id = _describe(package)
        publication = self._link.publish(wire.submission(
            self.code, body, message_id, kind=kind, user_id=self.account, client=CLIENT))
        submission = Submission(message_id, _sha256(body), len(body), kind, document_id,
                                publication)
        if wait:
            self._await(publication)
        else:
            with self._lock:
                self._unflushed.append(publication)
                if len(self._unflushed) > 10_000:  # a caller that never flushes
                    self._unflushed = [p for p in self._unflushed if not p.ok]
        return submission

    def send_many(self, packages: Iterable[bytes | DocumentPackage | StatusPackage], *,
                  signer: Signer | None = None) -> list[Submission]:
        """Send every package with pipelined confirms; return once all are confirmed
        (raises :class:`~vdx.errors.TransportError` naming those that were not)."""
        submissions = [self.send(p, signer=signer, wait=False) for p in packages]
        self.flush()
        return submissions

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the confirms of everything sent with ``wait=False``; raise
        :class:`~vdx.errors.TransportError` if some were refused or are still unconfirmed
        after ``timeout`` (default ``confirm_timeout``) seconds. Check
        :attr:`Submission.confirmed` to know which."""
        deadline = time.monotonic() + (self._confirm_timeout if timeout is None else timeout)
        with self._lock:
            pending, self._unflushed = self._unflushed, []
        failed = [p for p in pending if not p.wait(max(0.0, deadline - time.monotonic()))
                  or p.error]
        if failed:
            with self._lock:
                self._unflushed = [p for p in failed if not p.done] + self._unflushed
            raise TransportError("transport.unavailable", f"{len(failed)} message(s) not "
                                 f"confirmed: " + ", ".join(
                                     f"{p.message.message_id} ({p.error or 'no confirm yet'})"
                                     for p in failed[:5]))

    def send_status(self, about: Delivery | DocumentPackage | ResponseFor, code: str,
                    description: str | None = None, *, wait: bool = True) -> Submission:
        """Send status ``code`` (02–06; 13 to recall one's own document; 15/16 to answer an
        update or recall; 01 is sent automatically) about a delivered document, a
        document value, or a :class:`~vdx.core.model.ResponseFor`. ``description`` defaults to
        the code's Vietnamese meaning. Needs the client's signer."""
        return self.send(self._status(about, code, description), wait=wait)

    def _prepare(self, package: bytes | Package, signer: Signer | None) -> bytes:
        if isinstance(package, DocumentPackage | StatusPackage):
            signer = signer or self.signer
            if signer is None:
                raise ValueError("a package given as a value needs a signer: pass signer= "
                                 "to NodeClient or to send()")
            return signer.sign(build(package))
        if isinstance(package, bytes | bytearray | memoryview):
            return signer.sign(bytes(package)) if signer is not None else bytes(package)
        raise TypeError(f"send() takes bytes or a package value, not {type(package).__name__}")

    def _await(self, publication: Publication) -> None:
        if not publication.wait(self._confirm_timeout):
            raise TransportError(
                "transport.unavailable",
                f"the broker did not confirm message {publication.message.message_id} within "
                f"{self._confirm_timeout:g} s ({self._link.last_error or 'no answer'}); it is "
                f"published again when the connection is back")
        if publication.error:
            raise TransportError("transport.unavailable", publication.error)

    def _status(self, about: Delivery | DocumentPackage | ResponseFor, code: str,
                description: str | None) -> StatusPackage:
        if code not in STATUS_CODES:
            raise ValueError(f"status code must be one of {', '.join(STATUS_CODES)}, "
                             f"not {code!r}")
        if isinstance(about, Delivery):
            about = about.package  # type: ignore[assignment]
        if isinstance(about, DocumentPackage):
            about = ResponseFor(about.sender.organ_id, str(about.code), about.document_id,
                                about.promulgation.date)
        if not isinstance(about, ResponseFor):
            raise TypeError("a status is about a delivered document, a DocumentPackage or "
                            f"a ResponseFor, not {type(about).__name__}")
        return StatusPackage(
            sender=Organization(self.code), response_for=about, staff=self.staff,
            status_code=code, description=description or STATUS_MEANINGS[code][0],
            timestamp=datetime.now(VIETNAM_TZ).replace(microsecond=0))

    # ------------------------------------------------------------------ receipts

    def wait_for_receipt(self, submission: Submission | str, timeout: float = 30.0) -> Receipt:
        """The ``accepted``, ``rejected`` or ``duplicate`` receipt for ``submission`` (or
        a package SHA-256), waiting up to ``timeout`` seconds (:class:`TimeoutError`).

        A :class:`Submission` gets the hub's answer to that very message
        (:func:`vdx.core.receipts.answers`): sending the same bytes again waits for the
        answer to the new message (``duplicate``), not the earlier one's. A SHA-256 alone
        matches the first answer to any message carrying those bytes.

        The receipt stays available to :meth:`receipts`; other receipts that arrive
        meanwhile are kept too.
        """
        if isinstance(submission, Submission):
            sha256, message_id = submission.sha256, submission.message_id

            def wanted(r: Receipt) -> bool:
                return answers(r, self.account, message_id, sha256)
        else:
            sha256 = submission

            def wanted(r: Receipt) -> bool:
                return r.kind in FINAL_KINDS
        self.connect()
        deadline = time.monotonic() + timeout
        with self._receipts_changed:
            while True:
                for item in self._state.find_receipts(sha256):
                    if wanted(item.receipt):
                        return item.receipt
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._no_receipt(sha256, timeout))
                self._receipts_changed.wait(min(remaining, 1.0))

    def receipts(self, timeout: float | None = 0.0) -> Iterator[SignedReceipt]:
        """Every receipt not yet taken, oldest first, then those that arrive, until none
        arrives for ``timeout`` seconds (``None``: until :meth:`stop`).

        A receipt is taken (never offered again, also after a restart with a state file)
        when the loop asks for the next one; leaving the loop early leaves the one in hand.
        """
        self.connect()
        while True:
            available = self._state.receipts()
            if not available:
                if not self._wait_for_receipts(timeout):
                    return
                continue
            for item in available:
                yield item
                self._state.take_receipt(item.receipt.receipt_id)

    def _wait_for_receipts(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._receipts_changed:
            while not self._state.receipts():
                if self._stop.is_set():
                    return False
                remaining = _POLL if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._receipts_changed.wait(min(remaining, _POLL))
        return True

    def _no_receipt(self, sha256: str, timeout: float) -> str:
        why = f"no receipt for package {sha256[:12]}… within {timeout:g} s"
        refused = self._link.following().get(self._receipts_queue)
        if refused is not None:
            why += (f"; the broker refused the receipts queue {self._receipts_queue} "
                    f"({refused}), so receipts come in the inbox, behind deliveries: run "
                    f"`vdx init` on the hub (or read deliveries())")
        elif not self._link.connected:
            why += f"; not connected to the broker ({self._link.last_error or 'connecting'})"
        return why

    # ------------------------------------------------------------------ receiving

    def deliveries(self, timeout: float | None = None, *,
                   limit: int | None = None) -> Iterator[Delivery]:
        """Verified documents and statuses, each once, until none arrives for ``timeout``
        seconds (``None``: until :meth:`stop`), or after ``limit`` of them.

        The body of the loop is the handler. A document's status 01 is published before
        the document is handed out; a delivery is acknowledged when the loop asks for the
        next one (once that 01 is confirmed); if the loop ends early (``break`` or an
        exception), the delivery in hand goes back to the queue. So use it in a ``for``
        loop (or ``close()`` it): a generator put aside keeps its delivery unacknowledged
        until it is closed.
        """
        self._require_trust()
        self.connect()
        count = 0
        while limit is None or count < limit:
            taken = self._next_incoming(timeout)
            if taken is None:
                return
            generation, incoming = taken
            delivery = self._admit(generation, incoming)
            if delivery is None:
                continue
            try:
                yield delivery
            except BaseException:  # GeneratorExit too: the handler did not finish
                self._link.settle(generation, incoming.tag, ack=False, requeue=True)
                raise
            self._handled(generation, incoming.tag, delivery)
            count += 1

    def run(self, handler: Callable[[Delivery], object], *, idle_timeout: float | None = None,
            retry_delay: float = 1.0) -> int:
        """Call ``handler`` for each delivery until :meth:`stop` (or ``idle_timeout``
        seconds without one); return how many were handled. A handler exception is
        logged and the delivery comes again after ``retry_delay`` seconds."""
        self._require_trust()
        handled = 0
        while not self._stop.is_set():
            stream = self.deliveries(timeout=idle_timeout)
            try:
                for delivery in stream:
                    handler(delivery)
                    handled += 1
                return handled
            except Exception:
                log.exception("the handler failed; the delivery goes back to the queue",
                              extra={"event": "handler_failed"})
                stream.close()
                self._stop.wait(retry_delay)
        return handled

    def _require_trust(self) -> None:
        if self._verifier is None:
            raise ValueError("receiving needs a trust store: NodeClient(..., trust="
                             "TrustStore.from_dir(DIR)); every delivery is verified end to end")

    def _next_incoming(self, timeout: float | None) -> tuple[int, Incoming] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            try:
                return self._incoming.get(timeout=wait) if wait > 0 \
                    else self._incoming.get_nowait()
            except queue.Empty:
                if wait <= 0:
                    return None
        return None

    def _admit(self, generation: int, incoming: Incoming) -> Delivery | None:
        """The delivery to hand out, its status 01 already on its way; or None when it
        was settled here."""
        message = wire.read_from_hub(incoming.type, incoming.message_id, incoming.headers)
        delivery_id = str(message.delivery_id)
        record = self._state.delivery(delivery_id)
        if record is not None and record.state != ARRIVING:
            log.info("dropped a delivery handled before", extra={
                "event": "duplicate_delivery", "delivery_id": delivery_id})
            if record.state == DONE:
                self._link.settle(generation, incoming.tag, ack=True)
            else:  # handled, but its status 01 was not confirmed: finish that
                self._complete(generation, incoming.tag, delivery_id, record.arrival_id,
                               record.arrival_body)
            return None
        sender = message.sender
        try:
            package, verified = verify_delivery(incoming.body, str(sender), self._verifier,
                                                attachment_data=self.attachment_data)
        except VdxError as exc:
            log.error("refused a delivery that does not verify", extra={
                "event": "delivery_refused", "delivery_id": delivery_id, "sender": sender,
                "code": exc.code, "reason": exc.message})
            self._link.settle(generation, incoming.tag, ack=False, requeue=False)
            if self._on_refused is not None:
                self._on_refused(RefusedDelivery(delivery_id, sender, exc.code, exc.message))
            return None
        document_id = (package.document_id if isinstance(package, DocumentPackage)
                       else package.response_for.document_id)
        delivery = Delivery(delivery_id, package.kind, verified.sender_code, document_id,
                            package, incoming.body, verified.signer, message.received_at,
                            incoming.redelivered)
        try:
            self._announce(delivery, record)
        except BaseException:  # no 01 could be prepared: the delivery waits in the queue
            self._link.settle(generation, incoming.tag, ack=False, requeue=True)
            raise
        return delivery

    def _announce(self, delivery: Delivery, record: DeliveryRecord | None) -> None:
        """Send status 01 for ``delivery`` before the handler runs.

        Before, because the handler may send 03 or more itself and the sender should see
        01 first. The signed 01 is recorded before it is published: from then on any
        redelivery (after a crash, a handler's exception or a lost connection) publishes
        these very bytes under this message id again, which the hub journals once, so a
        delivery gets one 01 whatever happens (with a state file; see
        :mod:`vdx.client.state` for the in-memory state)."""
        if record is not None:  # arriving: the handler did not finish last time
            arrival_id, arrival_body = record.arrival_id, record.arrival_body
        elif delivery.kind == "document" and self.auto_arrival and self.signer is not None:
            arrival_body = self.signer.sign(build(self._status(delivery, "01", None)))
            arrival_id = str(uuid.uuid4())
            self._state.mark_arriving(delivery.delivery_id, arrival_id, arrival_body)
        else:
            return
        if arrival_id is not None and arrival_body is not None:
            self._publish_arrival(delivery.delivery_id, arrival_id, arrival_body)

    def _publish_arrival(self, delivery_id: str, arrival_id: str,
                         arrival_body: bytes) -> Publication:
        with self._lock:
            publication = self._arrivals.get(delivery_id)
            # A 01 confirmed or still in flight in this process is not published again
            # (the link itself republishes an unconfirmed one after a reconnection).
            if publication is None or (publication.done and not publication.ok):
                publication = self._arrivals[delivery_id] = self._link.publish(
                    wire.submission(self.code, arrival_body, arrival_id, kind="status",
                                    user_id=self.account, client=CLIENT))
        return publication

    def _handled(self, generation: int, tag: int, delivery: Delivery) -> None:
        """The handler returned: acknowledge, once the 01 (if any) is the broker's."""
        with self._lock:
            arrival = self._arrivals.get(delivery.delivery_id)
        if arrival is None or arrival.ok:  # no 01, or confirmed while the handler ran
            self._finish(generation, tag, delivery.delivery_id)
            return
        # Recorded so that a redelivery after a crash is not handed out again.
        message = arrival.message
        self._state.mark_handled(delivery.delivery_id, message.message_id, message.body)
        self._complete(generation, tag, delivery.delivery_id, message.message_id,
                       message.body)

    def _complete(self, generation: int, tag: int, delivery_id: str, arrival_id: str | None,
                  arrival_body: bytes | None) -> None:
        if arrival_body is None or arrival_id is None:
            self._finish(generation, tag, delivery_id)
            return
        publication = self._publish_arrival(delivery_id, arrival_id, arrival_body)

        def confirmed(p: Publication) -> None:
            # Acknowledged only once the 01 is the broker's: a lost 01 is sent again.
            if p.ok:
                self._finish(generation, tag, delivery_id)
            else:
                self._link.settle(generation, tag, ack=False, requeue=True)

        publication.add_done_callback(confirmed)

    def _finish(self, generation: int, tag: int, delivery_id: str) -> None:
        self._state.mark_done(delivery_id)
        with self._lock:
            self._arrivals.pop(delivery_id, None)
        self._link.settle(generation, tag, ack=True)

    # ------------------------------------------------------------------ I/O thread

    def _on_message(self, generation: int, incoming: Incoming) -> None:
        message = wire.read_from_hub(incoming.type, incoming.message_id, incoming.headers)
        if message.is_receipt:  # from the receipts queue (its lane), or the inbox
            self._keep_receipt(generation, incoming)
        elif message.is_delivery and incoming.lane == 0:  # deliveries: the inbox only
            self._incoming.put((generation, incoming))
        else:
            log.error("dead-lettered a message that is neither a delivery nor a receipt",
                      extra={"event": "unknown_message", "message_id": incoming.message_id,
                             "queue": incoming.queue})
            self._link.settle(generation, incoming.tag, ack=False, requeue=False,
                              lane=incoming.lane)

    def _keep_receipt(self, generation: int, incoming: Incoming) -> None:
        try:
            receipt = verify_receipt(incoming.body, self.hub_certificate)
        except VdxError as exc:
            log.error("dead-lettered a receipt that does not verify", extra={
                "event": "receipt_refused", "message_id": incoming.message_id,
                "code": exc.code, "reason": exc.message})
            self._link.settle(generation, incoming.tag, ack=False, requeue=False,
                              lane=incoming.lane)
            return
        try:
            self._state.add_receipt(SignedReceipt(receipt, incoming.body,
                                                  self.hub_certificate is not None))
        except Exception:  # the state file is unwritable: the broker keeps the receipt
            log.exception("cannot store a receipt", extra={"event": "state_error"})
            self._link.settle(generation, incoming.tag, ack=False, requeue=True,
                              lane=incoming.lane)
            return
        with self._receipts_changed:
            self._receipts_changed.notify_all()
        self._link.settle(generation, incoming.tag, ack=True, lane=incoming.lane)


def _describe(package: bytes | Package) -> tuple[str | None, str | None]:
    """Kind and DocumentId of a package value. Bytes are not parsed for this: reading them
    would cost more than publishing them (the hub reads them anyway)."""
    if isinstance(package, DocumentPackage):
        return "document", package.document_id
    if isinstance(package, StatusPackage):
        return "status", package.response_for.document_id
    return None, None


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
