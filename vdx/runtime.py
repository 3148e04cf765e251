"""Wiring for a running hub: the registry view, the verifier and the hub's keys.

:func:`load_services` reads the configuration once per worker process (trust store,
hub key and certificate: loading keys costs tens of milliseconds, so never per message)
and returns the :class:`vdx.hub.HubServices` the worker calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree
from sqlalchemy.orm import Session

from . import journal, pki, registry
from .admin import HubConfig
from .hub import HubServices
from .ledger import make_hash_signer, make_hash_verifier
from .receipts import Receipt, sign_receipt
from .routing import KnownDocument
from .signing import Signer
from .verify import TrustStore, VerificationPolicy, Verifier


@dataclass
class RegistryView:
    """The registry and the journal as one message's checks see them (one session)."""

    session: Session
    verifier: Verifier

    def node_status(self, code: str) -> str | None:
        return registry.node_status(self.session, code)

    def known_document(self, sender: str, document_id: str) -> KnownDocument | None:
        return journal.known_document(self.session, sender, document_id)

    def verify(self, tree: etree._ElementTree, sender: str) -> etree._ElementTree:
        registered = registry.registered_lookup(self.session)
        return self.verifier.verify(tree, sender, registered).signed_tree


@dataclass(frozen=True)
class HubKeys:
    signer: Signer

    @classmethod
    def load(cls, config: HubConfig) -> HubKeys:
        ca = pki.CaDir(config.pki_dir)
        return cls(Signer.from_files(ca.hub_key, ca.hub_cert))

    def hash_verifier(self):
        return make_hash_verifier(self.signer.certificate)


def load_services(config: HubConfig, policy: VerificationPolicy | None = None) -> HubServices:
    verifier = Verifier(TrustStore.from_dir(config.trust_dir), policy or VerificationPolicy())
    keys = HubKeys.load(config)
    sign_hash = make_hash_signer(keys.signer.key)

    def make_receipt(receipt: Receipt) -> bytes:
        return sign_receipt(receipt, keys.signer.sign_receipt)

    return HubServices(
        view=lambda session: RegistryView(session, verifier),
        make_receipt=make_receipt,
        sign_hash=sign_hash,
    )
