"""What each VXP operation does: authenticate, then one named step per operation.

:class:`Gateway` is the whole gateway minus HTTP: :meth:`Gateway.handle` takes an
operation name, the request's headers, body and client address, and returns the HTTP
status and the JSON answer. It never raises: a refusal is a ``FAIL`` answer with a
catalogue code, a sentence saying what to do and every field the SDK reads for that
operation (:func:`adapters.gateway.wire.fail`); an unexpected failure is logged with a
reference and answered as such.

Every request is checked against its system's settings: the address it came from (its
allow-list), its signature and timestamp (:mod:`adapters.gateway.auth`, by the system's
zone and policy), its operation (below), and, under the strict policy, recorded against
replay. It acts only for the nodes of the system that signed it.

A request is judged in two steps, so that nothing of its body is read before its headers
authenticated: :meth:`Gateway.admit` (headers only) and :meth:`Gateway.serve` (the body,
at most :meth:`Gateway.body_limit` bytes of it); :meth:`Gateway.handle` does both.

**What binds a signed request to its operation.** The SDK signs headers only, not the
path: the operation is not under the signature. What is:

- the ``Content-Type`` the SDK signs with every call: ``application/octet-stream`` for
  ``sendEdoc``, ``application/json`` for every other operation (both SDK versions put
  it in the signed header map before each call). So a ``sendEdoc`` signature serves no
  other operation and no other signature serves ``sendEdoc`` (``gateway.wrong_operation``),
  in both policies; ``sendEdoc``'s body is bound by the signed ``hash-file``;
- under the **strict** policy, the replay store is keyed by the signature across every
  operation: a signed header set is accepted once, for one operation; sent again to the
  same operation it is ``gateway.replayed_request`` (``sendEdoc`` excepted: answered
  again, idempotent by content), to another it is ``gateway.wrong_operation``. A
  captured request is therefore good for at most one operation, its first;
- under the **compatible** policy, nothing more can be bound: the SDK's kept service
  object carries every earlier parameter, so its own ``getEdoc`` of a document signs
  exactly what its following ``updateStatus`` of it signs (``docId``, ``status`` left by
  the previous ``updateStatus``, ``filePath``), and its ``countReceiveStatus`` what the
  ``getReceivedEdocList`` before it signed. A captured request of a compatible system
  can be sent again, to any operation but ``sendEdoc`` (or only to ``sendEdoc``), with
  the parameters it carries, for as long as the secret lives: what bounds that is the
  address allow-list, TLS, and that ``done`` is final.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from vdx_adapters.gateway import tables as gateway

from vdx import store
from vdx.broker.wire import gateway_submission
from vdx.core.model import DocumentPackage, StatusPackage
from vdx.core.quirks import placeholder_signatures
from vdx.core.xmlsafe import ParseLimits, parse_untrusted
from vdx.errors import EnvelopeError, GatewayError, SignatureError, TransportError, VdxError
from vdx.hub.pipeline import admit, claimed_sender
from vdx.hub.supervisor import RegistryView
from vdx.registry import nodes as registry
from vdx.registry.admin import HubConfig
from vdx.xmldsig.sign import DS_SIGNATURE, Signer

from . import inbox, keyfile, mailbox, wire
from .auth import (
    STRICT,
    SignedRequest,
    TimestampRule,
    authenticate,
    check_operation,
    check_peer,
    package_from_body,
    read_auth_headers,
)
from .broker import InboxDrainer, InboxMessage, Publisher

log = logging.getLogger("vdx.gateway")

Answer = tuple[int, dict[str, Any]]
# The SDK writes the package and then CRLF as sendEdoc's body; room for that and little more.
BODY_SLACK = 1024
# Every other operation sends "{}", nothing, or a small JSON object (registerAgency's).
SMALL_BODY = 16 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway runs. ``amqp_url`` is the gateway account's (``vdx gateway
    add-system`` writes it to a 0600 file); ``replay_window`` how far a strict system's
    timestamp may be from the gateway's clock (each system's zone and policy are its own,
    ``vdx gateway set-policy``)."""

    hub: HubConfig
    amqp_url: str
    replay_window: timedelta = timedelta(minutes=5)
    limits: ParseLimits = field(default_factory=ParseLimits)
    refresh_seconds: float = 5.0
    max_per_client: int = 16  # requests served at once for one client address (HTTP 429)


@dataclass(frozen=True)
class _Operation:
    methods: tuple[str, ...]
    run: Callable[[Gateway, Session, SignedRequest, gateway.System, bytes], dict[str, Any]]
    # A replay of sendEdoc is answered, not refused: the operation is idempotent by content
    # (same package, same DocId, no second copy), so a replay can change nothing, while the
    # SDK's HTTP layer re-sends the identical request when an answer is lost, and refusing
    # that would report a failure for a package the hub has.
    replay_safe: bool = False
    takes_package: bool = False  # its body is a package (sendEdoc), not a small JSON


@dataclass(frozen=True)
class Admitted:
    """A request whose headers authenticated, before any of its body is read."""

    operation: str
    signed: SignedRequest
    system: gateway.System


class Gateway:
    """The gateway's state and operations (see the module docstring)."""

    def __init__(self, config: GatewayConfig, *, engine: Engine | None = None,
                 clock: Callable[[], datetime] = store.utcnow) -> None:
        from vdx.xmldsig.trust import TrustStore
        from vdx.xmldsig.verify import Verifier

        self.config = config
        self.engine = engine or store.make_engine(config.hub.database_url)
        self.sessions: sessionmaker[Session] = store.session_factory(self.engine)
        self.clock = clock
        # The same checks as the hub, run before publishing, so that agency software
        # hears why a package is refused in sendEdoc's own answer.
        self.verifier = Verifier(TrustStore.from_dir(config.hub.trust_dir))
        self.publisher = Publisher(config.amqp_url)
        self.drainer = InboxDrainer(config.amqp_url, self._served_nodes, self.keep,
                                    refresh=config.refresh_seconds)
        self._signers: dict[tuple[str, str, str], Signer] = {}
        self._signers_lock = threading.Lock()
        self._key: str | None = None

    # ---------------------------------------------------------------- lifecycle --

    def start(self) -> None:
        """Publish what a crash left unpublished, then start draining inboxes."""
        try:
            self._relay_unpublished()
        except (VdxError, SQLAlchemyError) as exc:  # a later retry of the SDK relays it
            log.warning("could not relay unpublished packages at start",
                        extra={"event": "relay_failed", "error": type(exc).__name__})
        self.drainer.start()

    def stop(self) -> None:
        self.drainer.stop()
        self.publisher.close()

    def _served_nodes(self) -> tuple[str, ...]:
        with self.sessions() as session:
            return gateway.served_nodes(session)

    # ------------------------------------------------------------------ requests --

    def handle(self, operation: str, method: str, headers: Iterable[tuple[str, str]],
               body: bytes, peer: str | None = None) -> Answer:
        """Serve one request from the client address ``peer``; never raises (see the
        module docstring)."""
        admitted = self.admit(operation, method, headers, peer)
        if not isinstance(admitted, Admitted):
            return admitted
        if len(body) > self.body_limit(operation):
            return self.too_large(operation, len(body))
        return self.serve(admitted, body)

    def admit(self, operation: str, method: str, headers: Iterable[tuple[str, str]],
              peer: str | None = None) -> Admitted | Answer:
        """Judge a request by its headers and address alone: :class:`Admitted`, or the
        refusal to answer. Never raises."""
        return self._answering(operation, lambda: self._admit(operation, method, headers,
                                                              peer))

    def serve(self, admitted: Admitted, body: bytes) -> Answer:
        """Run an admitted request's operation on its ``body``; never raises."""
        def run() -> Answer:
            # The operation owns its commits (sendEdoc commits before it publishes); what
            # it leaves uncommitted is committed here, or rolled back by a refusal.
            with self.sessions() as session:
                fields = OPERATIONS[admitted.operation].run(
                    self, session, admitted.signed, admitted.system, body)
                session.commit()
            return 200, wire.ok(**fields)

        return self._answering(admitted.operation, run)

    def body_limit(self, operation: str) -> int:
        """The most body bytes read for ``operation``, once its headers authenticated."""
        op = OPERATIONS.get(operation)
        if op is not None and op.takes_package:
            return self.config.limits.max_bytes + BODY_SLACK
        return SMALL_BODY

    def too_large(self, operation: str, size: int) -> Answer:
        """The refusal of a body of ``size`` bytes or more, over :meth:`body_limit`."""
        if self.body_limit(operation) > SMALL_BODY:
            accepted = f"packages are accepted up to {self.config.limits.max_bytes:,} bytes"
        else:
            accepted = (f"{operation} sends a small JSON body, at most "
                        f"{self.body_limit(operation):,} bytes")
        return wire.fail(EnvelopeError(
            "envelope.too_large", f"the request body is {size:,} bytes or more; {accepted}"),
            operation)

    def _answering(self, operation: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except VdxError as exc:
            return wire.fail(exc, operation)
        except SQLAlchemyError as exc:
            log.error("database error", extra={"event": "db_error", "error": type(exc).__name__})
            return wire.fail(TransportError("transport.unavailable",
                                            "the hub's database is unavailable; try again"),
                             operation)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("unexpected failure", extra={"event": "crash", "reference": reference})
            return 500, wire.internal_error(reference, operation)

    def _admit(self, operation: str, method: str, headers: Iterable[tuple[str, str]],
               peer: str | None) -> Admitted:
        op = OPERATIONS.get(operation)
        if op is None:
            raise GatewayError("gateway.bad_request",
                               f"{operation!r} is not a VXP operation this gateway "
                               f"offers ({', '.join(OPERATIONS)})")
        if method not in op.methods:
            raise GatewayError("gateway.bad_request",
                               f"{operation} takes {' or '.join(op.methods)}, not {method}")
        auth = read_auth_headers(headers)
        with self.sessions() as session:
            found = gateway.find_system(session, auth.system_id)
        if found is None:
            raise GatewayError("gateway.unknown_system",
                               f"system {auth.system_id!r} is not registered on this hub "
                               f"(`vdx gateway add-system`)")
        system, sealed = found
        # Before the signature: a client outside the allow-list learns nothing about it.
        check_peer(peer, system.allow_from, system.system_id)
        now = self.clock()
        rule = TimestampRule(zone=system.zone, window=self.config.replay_window,
                             policy=system.policy, not_before=system.created_at)
        signed = authenticate(auth, gateway.open_secret(sealed, self._secrets_key(sealed)),
                              now=now, rule=rule)
        check_operation(signed, operation, op.takes_package)
        if system.policy == STRICT:  # compatible: identical signed requests are accepted again
            self._remember(operation, op, signed, system, now)
        return Admitted(operation, signed, system)

    def _secrets_key(self, sealed: str) -> str | None:
        """The key of the systems' secrets (:mod:`.keyfile`), read once found."""
        if self._key is None and not sealed.startswith("plain:"):
            found = keyfile.load_key(self.config.hub.pki_dir)
            self._key = found.key if found else None
        return self._key

    def _remember(self, operation: str, op: _Operation, signed: SignedRequest,
                  system: gateway.System, now: datetime) -> None:
        """Record a strict system's signature; refuse one accepted before (module
        docstring): for another operation always, for this one unless it is replay-safe."""
        try:
            with self.sessions.begin() as session:
                earlier = mailbox.remember_signature(session, operation, signed.signature,
                                                     system.system_id, now,
                                                     signed.remember_until, tuple(OPERATIONS))
        except IntegrityError:
            earlier = operation  # the same request, in flight twice at once
        advice = (f"system {system.system_id} accepts each signed request once, for one "
                  f"operation (strict policy); a new request needs a new timestamp, which the "
                  f"VXP SDK sets when its service object is made: software that keeps one "
                  f"object for its whole run needs `vdx gateway set-policy "
                  f"{system.system_id} --policy compatible`")
        if earlier is None or (earlier == operation and op.replay_safe):
            return
        if earlier != operation:
            raise GatewayError("gateway.wrong_operation",
                               f"this exact signed request was accepted for {earlier}, and is "
                               f"not accepted again for {operation}: {advice}")
        raise GatewayError("gateway.replayed_request",
                           f"this exact signed {operation} request was received before, and "
                           f"{advice}")

    # -------------------------------------------------------------- operations --

    def send_edoc(self, session: Session, signed: SignedRequest, system: gateway.System,
                  body: bytes) -> dict[str, Any]:
        """Take the package ``hash-file`` names from the body; answer the DocId it got
        before if the same node sent the same bytes; sign it for the node if it is
        unsigned and the gateway may; run the hub's own checks; keep it, commit, publish
        (confirmed), and answer its new DocId."""
        from_code = _required(signed, "from")
        _require_node(system, from_code)
        kind = _message_type(signed)
        package_bytes = package_from_body(body, _required(signed, "hash-file"))
        sha256 = hashlib.sha256(package_bytes).hexdigest()
        earlier = mailbox.find_sent(session, from_code, sha256)
        if earlier is not None:  # the SDK retries: same package, same DocId, no second copy
            if earlier.published_at is None and earlier.body is not None:
                self._publish(earlier.body, earlier.doc_id, from_code, earlier.kind,
                              system.system_id, earlier.signed_by_gateway)
                mailbox.mark_published(session, earlier.doc_id, self.clock())
            return {"DocId": earlier.doc_id, "SignedByGateway": earlier.signed_by_gateway}
        outgoing, signed_by_gateway = self._signed_package(session, package_bytes, from_code)
        view = RegistryView(session, self.verifier)
        # user_id is the sender's own account: the gateway has already checked the system
        # may act for it, which is what the hub checks of the gateway's account.
        admitted = admit(outgoing, view.account_of(from_code) or from_code,
                         limits=self.config.limits, verify=view.verify, directory=view)
        package = admitted.package
        actual = "status" if isinstance(package, StatusPackage) else "edoc"
        if actual != kind:
            raise GatewayError("gateway.bad_request",
                               f"messagetype is {kind} but the package is an edXML {actual}")
        row = gateway.GatewaySentRow(
            doc_id=str(uuid.uuid4()), system_id=system.system_id, from_code=from_code,
            sha256=sha256, published_sha256=admitted.sha256, kind=kind,
            document_id=admitted.route.document_id, title=_title(package),
            notation=_notation(package), signed_by_gateway=signed_by_gateway, body=outgoing,
            sent_at=self.clock(), published_at=None, send_status="pending",
            send_status_desc=None)
        try:
            mailbox.record_sent(session, row, admitted.route.recipients)
            session.commit()  # kept before it is published: a retry finds it, a crash relays it
        except IntegrityError:  # the same package, sent twice at the same moment
            session.rollback()
            again = mailbox.find_sent(session, from_code, sha256)
            if again is None:
                raise
            return {"DocId": again.doc_id, "SignedByGateway": again.signed_by_gateway}
        self._publish(outgoing, row.doc_id, from_code, kind, system.system_id,
                      signed_by_gateway)
        mailbox.mark_published(session, row.doc_id, self.clock())
        return {"DocId": row.doc_id, "SignedByGateway": signed_by_gateway}

    def get_received_edoc_list(self, session: Session, signed: SignedRequest,
                               system: gateway.System, body: bytes) -> dict[str, Any]:
        items = mailbox.list_items(session, system.nodes, _message_type(signed))
        return {"data": [wire.received_item(item) for item in items]}

    def get_edoc(self, session: Session, signed: SignedRequest, system: gateway.System,
                 body: bytes) -> dict[str, Any]:
        doc_id = _required(signed, "docId")
        package = mailbox.item_body(session, system.nodes, doc_id)
        if package is None:
            raise _unknown_document(doc_id)
        return {"data": base64.b64encode(package).decode("ascii")}

    def update_status(self, session: Session, signed: SignedRequest, system: gateway.System,
                      body: bytes) -> dict[str, Any]:
        doc_id = _required(signed, "docId")
        status = _required(signed, "status").lower()
        if status not in mailbox.TRANSITIONS:
            raise GatewayError("gateway.bad_request",
                               f"status {status!r}: use done, fail or processing")
        item = mailbox.set_state(session, system.nodes, doc_id, status)
        if item is None:
            raise _unknown_document(doc_id)
        if item.state != mailbox.TRANSITIONS[status]:  # done is final (mailbox.set_state)
            raise GatewayError("gateway.already_done",
                               f"document {doc_id[:80]!r} was acknowledged as done at "
                               f"{wire.vxp_time(item.updated_at)}; a done document is never "
                               f"offered again, so {status!r} changed nothing")
        return {}

    def get_sent_edoc_list(self, session: Session, signed: SignedRequest,
                           system: gateway.System, body: bytes) -> dict[str, Any]:
        kind = _message_type(signed) if signed.param("messagetype") else None
        lines = mailbox.sent_lines(session, system.nodes, kind, signed.param("docId") or None)
        return {"data": [wire.sent_item(line) for line in lines]}

    def count_receive_edoc(self, session: Session, signed: SignedRequest,
                           system: gateway.System, body: bytes) -> dict[str, Any]:
        return {"count": mailbox.count_items(session, system.nodes, "edoc")}

    def count_receive_status(self, session: Session, signed: SignedRequest,
                             system: gateway.System, body: bytes) -> dict[str, Any]:
        return {"count": mailbox.count_items(session, system.nodes, "status")}

    def get_agencies_list(self, session: Session, signed: SignedRequest,
                          system: gateway.System, body: bytes) -> dict[str, Any]:
        nodes = registry.list_nodes(session, registry.ACTIVE)
        return {"data": [wire.agency(node) for node in nodes]}

    def get_agencies_list_qd20(self, session: Session, signed: SignedRequest,
                               system: gateway.System, body: bytes) -> dict[str, Any]:
        level = signed.param("level") or _json_field(body, "level")
        nodes = registry.list_nodes(session, registry.ACTIVE)
        if level not in (None, ""):
            if not str(level).isdigit():
                raise GatewayError("gateway.bad_request", f"level {level!r} is not a number")
            nodes = tuple(n for n in nodes if wire.agency_level(n.code) == int(level))
        return {"data": [wire.agency_qd20(node) for node in nodes]}

    def register_agency(self, session: Session, signed: SignedRequest,
                        system: gateway.System, body: bytes) -> dict[str, Any]:
        raise GatewayError("gateway.not_supported",
                           "agencies join this hub when its administrator registers them with "
                           "their signing certificate (`vdx node register`); nothing was "
                           "changed")

    def delete_agency(self, session: Session, signed: SignedRequest, system: gateway.System,
                      body: bytes) -> dict[str, Any]:
        raise GatewayError("gateway.not_supported",
                           "agencies leave this hub when its administrator revokes them "
                           "(`vdx node revoke`); nothing was changed")

    # ---------------------------------------------------------------- helpers --

    def _signed_package(self, session: Session, package: bytes, code: str,
                        ) -> tuple[bytes, bool]:
        """The package to publish: as sent if it carries a signature, else signed by the
        gateway with the node's key when the node is configured for that. A placeholder
        signature (what EdXML102 and legacy software write) counts as none: the signer
        removes it and signs in its place. Beside a real signature it is left alone (it
        was signed with the package) and the hub refuses the two (``signature.multiple``)."""
        tree = parse_untrusted(package, self.config.limits)
        claimed = claimed_sender(tree)
        if claimed != code:  # checked before the gateway would put any key to it
            raise GatewayError("gateway.bad_request",
                               f"the package is from {claimed or 'nobody'}, but the request's "
                               f"`from` is {code}")
        if next(tree.getroot().iter(DS_SIGNATURE), None) is not None:
            return package, False
        config = gateway.signer_for(session, code)
        if config is None:
            placeholder = bool(placeholder_signatures(tree.getroot()))
            what = "carries only a placeholder signature" if placeholder else "is not signed"
            raise SignatureError(
                "signature.placeholder" if placeholder else "signature.missing",
                f"the package {what} and the gateway does not sign for {code} "
                f"(`vdx gateway sign-for {code} --key … --cert …`)")
        return self._signer(config).sign(package, self.config.limits), True

    def _signer(self, config: gateway.SignerConfig) -> Signer:
        key = (config.node_code, config.key_path, config.cert_path)
        with self._signers_lock:
            signer = self._signers.get(key)
            if signer is None:  # loading a key costs ~40 ms: once per process
                signer = load_signer(config.key_path, config.cert_path)
                self._signers[key] = signer
            return signer

    def _publish(self, body: bytes, doc_id: str, from_code: str, kind: str, system_id: str,
                 signed_by_gateway: bool) -> None:
        self.publisher.publish(gateway_submission(
            from_code, body, doc_id, kind=kind, user_id=self.publisher.user, system=system_id,
            signed_by_gateway=signed_by_gateway))

    def _relay_unpublished(self) -> None:
        with self.sessions.begin() as session:
            for row in mailbox.unpublished(session):
                if row.body is None:
                    continue
                self._publish(row.body, row.doc_id, row.from_code, row.kind, row.system_id,
                              row.signed_by_gateway)
                mailbox.mark_published(session, row.doc_id, self.clock())

    # ------------------------------------------------------------ the mailbox --

    def keep(self, message: InboxMessage) -> None:
        """Commit one inbox message to the mailbox (the drainer acks after this)."""
        with self.sessions.begin() as session:
            inbox.keep(session, message)


OPERATIONS: dict[str, _Operation] = {
    "sendEdoc": _Operation(("POST",), Gateway.send_edoc, replay_safe=True,
                           takes_package=True),
    "getReceivedEdocList": _Operation(("POST",), Gateway.get_received_edoc_list),
    "getEdoc": _Operation(("POST",), Gateway.get_edoc),
    "updateStatus": _Operation(("POST",), Gateway.update_status),
    "getSentEdocList": _Operation(("POST",), Gateway.get_sent_edoc_list),
    # GET as documented; the SDK 2.0.1 jar actually POSTs "{}" to these two.
    "countReceiveEdoc": _Operation(("GET", "POST"), Gateway.count_receive_edoc),
    "countReceiveStatus": _Operation(("GET", "POST"), Gateway.count_receive_status),
    "getAgenciesList": _Operation(("POST",), Gateway.get_agencies_list),
    "getAgenciesListQD20": _Operation(("POST",), Gateway.get_agencies_list_qd20),
    "registerAgency": _Operation(("POST",), Gateway.register_agency),
    "deleteAgency": _Operation(("POST",), Gateway.delete_agency),
}


def load_signer(key_path: str, cert_path: str) -> Signer:
    """The node's signer; refuses a key file others may read (``gateway.bad_key``)."""
    try:
        mode = os.stat(key_path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise GatewayError("gateway.bad_key",
                               f"{key_path} is readable by others (mode {mode & 0o777:o}); "
                               f"run `chmod 600 {key_path}`")
        return Signer.from_files(key_path, cert_path)
    except OSError as exc:
        raise GatewayError("gateway.bad_key", f"cannot read {exc.filename}: {exc.strerror}") \
            from exc
    except ValueError as exc:
        raise GatewayError("gateway.bad_key", f"{key_path} / {cert_path}: {exc}") from exc


def _required(signed: SignedRequest, name: str) -> str:
    value = signed.param(name)
    if not value:
        raise GatewayError("gateway.bad_request", f"the signed parameter {name!r} is missing")
    return value


def _message_type(signed: SignedRequest) -> str:
    kind = (signed.param("messagetype") or "edoc").lower()
    if kind not in mailbox.KINDS:
        raise GatewayError("gateway.bad_request", f"messagetype {kind!r}: use edoc or status")
    return kind


def _require_node(system: gateway.System, code: str) -> None:
    if code not in system.nodes:
        raise GatewayError("gateway.not_your_node",
                           f"system {system.system_id} does not act for {code}")


def _unknown_document(doc_id: str) -> GatewayError:
    return GatewayError("gateway.unknown_document",
                        f"no document {doc_id[:80]!r} in the mailbox of this system's nodes")


def _json_field(body: bytes, name: str) -> str | None:
    import json

    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return None
    return str(value.get(name)) if isinstance(value, dict) and name in value else None


def _title(package: DocumentPackage | StatusPackage) -> str:
    if isinstance(package, DocumentPackage):
        return package.subject
    return f"{package.status_code}: {package.description}"


def _notation(package: DocumentPackage | StatusPackage) -> str:
    if isinstance(package, DocumentPackage):
        return str(package.code)
    return package.response_for.code
