"""The hub's read side of the database for one batch of submissions.

:class:`RegistryView` is what :class:`vdx.hub.plan.BatchDirectory` asks for, read from
the database: node statuses, broker accounts and certificates, gateway delegations, the
documents sent before, and which messages and deliveries the journal has already. The
gateway uses it too, for the same checks on what it is about to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from sqlalchemy.orm import Session

from vdx.core.routing import KnownDocument
from vdx.errors import VdxError
from vdx.hub import journal
from vdx.registry import delegates as gateway
from vdx.registry import nodes as registry
from vdx.xmldsig.verify import Verifier


@dataclass
class RegistryView:
    """The registry and the journal as one batch's checks see them (one read session).

    Node statuses, certificates and gateway delegations are read once per batch and
    remembered for it: a batch is decided in a few milliseconds, the same snapshot a
    single transaction would give, and a change by an admin applies from the next batch.
    """

    session: Session
    verifier: Verifier
    gateway_user: str | None = None  # the VXP gateway's broker account, if it may publish
    _entries: dict[str, tuple[str, str] | None] = field(default_factory=dict, repr=False)
    _served: dict[str, bool] = field(default_factory=dict, repr=False)
    _certificates: dict[str, object] = field(default_factory=dict, repr=False)

    def _entry(self, code: str) -> tuple[str, str] | None:
        if code not in self._entries:
            self._entries[code] = registry.node_entry(self.session, code)
        return self._entries[code]

    def node_status(self, code: str) -> str | None:
        entry = self._entry(code)
        return None if entry is None else entry[0]

    def account_of(self, code: str) -> str | None:
        entry = self._entry(code)
        return None if entry is None else entry[1]

    def node_of_account(self, user: str) -> str | None:
        """The node whose broker user is ``user`` (asked for refusals only)."""
        return registry.node_of_account(self.session, user)

    def may_publish_for(self, user_id: str, sender: str) -> bool:
        if user_id != self.gateway_user:
            return False
        if sender not in self._served:
            self._served[sender] = gateway.serves(self.session, sender)
        return self._served[sender]

    def known_document(self, sender: str, document_id: str) -> KnownDocument | None:
        return journal.known_document(self.session, sender, document_id)

    def seen_inbound_keys(self, keys: Sequence[str]) -> set[str]:
        return journal.seen_inbound_keys(self.session, keys)

    def recorded_dedup_keys(self, keys: Sequence[str]) -> dict[str, str]:
        return journal.recorded_dedup_keys(self.session, keys)

    def registered(self, code: str) -> tuple[x509.Certificate, ...]:
        """:func:`vdx.registry.nodes.registered_certificates`, remembered for the batch (a
        refusal too: it is raised again for the next package from ``code``)."""
        if code not in self._certificates:
            try:
                self._certificates[code] = registry.signing_certificates(
                    self.session, code, self.node_status(code))
            except VdxError as exc:
                self._certificates[code] = exc
        found = self._certificates[code]
        if isinstance(found, VdxError):
            raise found
        return found

    def verify(self, tree: etree._ElementTree, sender: str) -> etree._ElementTree:
        # consume: the pipeline never reads the parsed tree again, so the signed content
        # is that tree without its signature, not a copy (20 MiB packages: one tree).
        return self.verifier.verify(tree, sender, self.registered, consume=True).signed_tree
