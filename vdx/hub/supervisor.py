"""Wiring for a running hub: the registry view, the verifier and the hub's keys.

:func:`load_services` reads the configuration once per worker process (trust store,
hub key and certificate: loading keys costs tens of milliseconds, so never per message)
and returns the :class:`vdx.hub.worker.HubServices` the worker calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from sqlalchemy.orm import Session

from vdx.core.ledger import make_hash_signer
from vdx.core.receipts import Receipt, signed_receipt
from vdx.core.routing import KnownDocument
from vdx.errors import VdxError
from vdx.hub import journal
from vdx.hub.worker import HubServices
from vdx.registry import delegates as gateway
from vdx.registry import nodes as registry
from vdx.registry.admin import HubConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer
from vdx.xmldsig.trust import TrustStore
from vdx.xmldsig.verify import VerificationPolicy, Verifier

log = logging.getLogger("vdx.hub")


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


@dataclass(frozen=True)
class HubKeys:
    signer: Signer

    @classmethod
    def load(cls, config: HubConfig) -> HubKeys:
        ca = pki.CaDir(config.pki_dir)
        return cls(Signer.from_files(ca.hub_key, ca.hub_cert))


def load_services(config: HubConfig, policy: VerificationPolicy | None = None) -> HubServices:
    verifier = Verifier(TrustStore.from_dir(config.trust_dir), policy or VerificationPolicy())
    keys = HubKeys.load(config)
    sign_hash = make_hash_signer(keys.signer.key)

    def make_receipt(receipt: Receipt) -> bytes:
        return signed_receipt(receipt, keys.signer)

    return HubServices(
        view=lambda session: RegistryView(session, verifier,
                                          gateway.gateway_user(config.broker.vhost)),
        make_receipt=make_receipt,
        sign_hash=sign_hash,
    )


def run_worker(index: int, config: HubConfig, hub_id: str, prefetch: int,
               metrics_port: int | None) -> None:
    """One worker process: logs, metrics, database, keys, then serve until SIGTERM."""
    from vdx import logs, malloc, metrics, store
    from vdx.broker.channel import amqp_url
    from vdx.hub.worker import HubWorker, WorkerConfig

    logs.configure()
    malloc.tune()
    if metrics_port:
        metrics.serve(metrics_port + index)
    engine = store.make_engine(config.database_url)
    worker = HubWorker(WorkerConfig(hub_id=hub_id, amqp_url=amqp_url(), prefetch=prefetch),
                       store.session_factory(engine), load_services(config))
    worker.install_signal_handlers()
    worker.run_forever()
    engine.dispose()


def run_hub(config: HubConfig, *, workers: int, prefetch: int, hub_id: str,
            metrics_port: int | None = None) -> int:
    """Run and supervise ``workers`` worker processes until SIGTERM/SIGINT.

    A worker that dies (killed, crashed) is started again: its unacknowledged messages
    went back to the queue and its committed work is in the outbox.
    """
    import multiprocessing
    import signal
    import time

    from vdx import logs

    logs.configure()
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start(i: int):
        p = ctx.Process(target=run_worker, args=(i, config, hub_id, prefetch, metrics_port),
                        name=f"vdx-hub-{i}")
        p.start()
        return p

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each finishes its batch and exits

    procs = [start(i) for i in range(workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    quick_deaths = 0
    started_at = [time.monotonic()] * workers
    while not stopping:
        time.sleep(0.2)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping:
                # A worker that dies at once, again and again, is misconfigured, not unlucky.
                quick_deaths = quick_deaths + 1 if time.monotonic() - started_at[i] < 5 else 0
                if quick_deaths >= 5:
                    log.error("workers keep dying at start; giving up",
                              extra={"event": "give_up", "exitcode": p.exitcode})
                    stop(None, None)
                    return 1
                log.warning("worker died; starting it again",
                            extra={"event": "respawn", "worker": i, "exitcode": p.exitcode})
                procs[i] = start(i)
                started_at[i] = time.monotonic()
    for p in procs:
        p.join()
    return 0
