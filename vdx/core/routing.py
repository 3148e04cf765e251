"""Who may send what to whom: the hub's routing decisions, as pure functions.

The worker asks :func:`route` what to do with a verified package; the answer names the
recipients that get a delivery. The facts it needs (node status, earlier documents) come
through the small :class:`Directory` interface, so the rules test without a database.

Rules (DESIGN.md):
- the broker-validated AMQP ``user_id`` must be the sender's own account, or the VXP
  gateway's account for a sender one of its connected systems serves;
- the sender must be active, every recipient registered and active (whatever the form
  of its code: a code outside the official forms is routed when the registry has it);
- a new document goes to each ``To`` once, the sender's own code included (live traffic
  has agencies and test systems sending to themselves; they get their own copy);
- revoke, update, replace (business types 1–3) and recall (status 13) may come only from
  the original document's sender and reach its original recipients;
- any other status may come only from a recipient of the document and reaches its sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vdx.core.identifiers import identifier_problem
from vdx.core.model import BusinessDocType, DocumentPackage, Package, StatusPackage
from vdx.errors import RegistryError, RoutingError

ACTIVE = "active"
RECALL = "13"


@dataclass(frozen=True)
class KnownDocument:
    """A document the hub accepted earlier: who sent it and to whom."""

    sender: str
    document_id: str
    recipients: tuple[str, ...]


class Directory(Protocol):
    def node_status(self, code: str) -> str | None:
        """``active``, ``suspended``, ``revoked``, or ``None`` for an unknown code."""

    def known_document(self, sender: str, document_id: str) -> KnownDocument | None:
        """The document ``document_id`` that ``sender`` sent earlier, if any."""

    def may_publish_for(self, user_id: str, sender: str) -> bool:
        """Whether broker user ``user_id``, not ``sender`` itself, may publish ``sender``'s
        packages: the VXP gateway's account, for the nodes its connected systems serve."""

    def account_of(self, code: str) -> str | None:
        """The broker user node ``code`` logs in as, or ``None`` for an unknown code."""


@dataclass(frozen=True)
class Route:
    """What the hub does with an accepted package."""

    sender: str
    document_id: str
    recipients: tuple[str, ...]
    kind: str  # "document" or "status"
    refers_to: KnownDocument | None = None  # the original, for statuses and business 1–3


def route(package: Package, user_id: str | None, directory: Directory) -> Route:
    """Decide the recipients of ``package`` or raise the error that refuses it."""
    sender = package.sender.organ_id
    authorise_sender(sender, user_id, directory)
    if isinstance(package, StatusPackage):
        return _route_status(package, directory)
    return _route_document(package, directory)


def authorise_sender(sender: str, user_id: str | None, directory: Directory) -> None:
    # The broker guarantees user_id is the account that published; only the sender's own
    # account or a delegate the directory names (the VXP gateway) may publish for it. An
    # unknown sender has no account: its own code stands in, and a later step refuses it
    # as unknown rather than as a mismatch.
    own = directory.account_of(sender) or sender
    if user_id != own and not (user_id and directory.may_publish_for(user_id, sender)):
        raise RoutingError(
            "routing.sender_mismatch",
            f"published by {user_id or 'an unnamed user'} but the package is from {sender}",
        )
    _require_active(sender, directory, role="sender")


def _require_active(code: str, directory: Directory, *, role: str) -> None:
    status = directory.node_status(code)
    if role == "recipient" and status != ACTIVE:
        raise RoutingError("routing.unknown_recipient",
                           f"recipient {code} is {status or _unregistered(code)}")
    if status is None:
        raise RegistryError("registry.unknown_node", f"{role} {code} is {_unregistered(code)}")
    if status != ACTIVE:
        raise RegistryError(f"registry.node_{status}", f"{role} {code} is {status}")


def _unregistered(code: str) -> str:
    # Say why the sender may have got it wrong: a code in neither official form is
    # usually a test system's or an old one that this hub's registry does not have.
    form = identifier_problem(code)
    return "not registered" if form is None else f"not registered ({form})"


def _route_document(package: DocumentPackage, directory: Directory) -> Route:
    recipients = tuple(dict.fromkeys(r.organ_id for r in package.recipients))
    for code in recipients:
        _require_active(code, directory, role="recipient")
    business = package.business
    original = None
    if business is not None and business.doc_type != BusinessDocType.NEW:
        original = _original_of_change(package, directory)
        outsiders = [r for r in recipients if r not in original.recipients]
        if outsiders:
            raise RoutingError(
                "routing.not_allowed",
                f"{', '.join(outsiders)} did not receive {original.document_id}; a revocation, "
                f"update or replacement reaches only the original recipients",
            )
    return Route(package.sender.organ_id, package.document_id, recipients, "document",
                 original)


def _original_of_change(package: DocumentPackage, directory: Directory) -> KnownDocument:
    """The document a revoke/update/replace acts on; only its own sender may act."""
    business = package.business
    assert business is not None
    sender = package.sender.organ_id
    targets = [business.document_id] if business.document_id else []
    targets += [r.document_id for r in business.replacements or ()]
    if not targets:
        raise RoutingError("routing.unknown_document",
                           "the business block names no document to revoke, update or replace")
    originals = [directory.known_document(sender, document_id) for document_id in targets]
    for document_id, original in zip(targets, originals, strict=True):
        if original is None:
            raise RoutingError(
                "routing.unknown_document",
                f"{sender} never sent {document_id}, so it cannot revoke, update or replace it",
            )
    return originals[0]  # type: ignore[return-value]


def _route_status(package: StatusPackage, directory: Directory) -> Route:
    sender = package.sender.organ_id
    about = package.response_for
    original = directory.known_document(about.organ_id, about.document_id)
    if original is None:
        raise RoutingError("routing.unknown_document",
                           f"no document {about.document_id} from {about.organ_id} is known")
    if package.status_code == RECALL:
        if sender != original.sender:
            raise RoutingError("routing.not_allowed",
                               f"only {original.sender}, the sender, may recall "
                               f"{original.document_id}")
        recipients = original.recipients
    else:
        if sender not in original.recipients:
            raise RoutingError("routing.not_allowed",
                               f"{sender} is not a recipient of {original.document_id} and may "
                               f"not send a status about it")
        recipients = (original.sender,)
    for code in recipients:
        _require_active(code, directory, role="recipient")
    return Route(sender, about.document_id, recipients, "status", original)
