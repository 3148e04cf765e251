"""Wiring for a running hub: the verifier, the hub's keys, the worker processes.

:func:`load_services` reads the configuration once per worker process (trust store,
hub key and certificate: loading keys costs tens of milliseconds, so never per message)
and returns the :class:`vdx.hub.worker.HubServices` the worker calls, whose registry view
is a :class:`vdx.hub.directory.RegistryView`. :func:`run_hub` starts and watches them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vdx.core.ledger import make_hash_signer
from vdx.core.receipts import Receipt, signed_receipt
from vdx.hub.directory import RegistryView
from vdx.hub.worker import HubServices
from vdx.registry import delegates as gateway
from vdx.registry.admin import HubConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer
from vdx.xmldsig.trust import TrustStore
from vdx.xmldsig.verify import VerificationPolicy, Verifier

log = logging.getLogger("vdx.hub")


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


def node_prefetch() -> int:
    """``$VDX_NODE_PREFETCH``: how many of one node's packages a worker holds at once
    (default :data:`vdx.hub.worker.NODE_PREFETCH`)."""
    from vdx.hub.worker import NODE_PREFETCH

    return _positive("VDX_NODE_PREFETCH", NODE_PREFETCH)


def node_batch() -> int:
    """``$VDX_NODE_BATCH``: how many of one node's packages one batch takes at most
    (default :data:`vdx.hub.worker.NODE_BATCH`)."""
    from vdx.hub.worker import NODE_BATCH

    return _positive("VDX_NODE_BATCH", NODE_BATCH)


def _positive(name: str, default: int) -> int:
    import os

    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


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
    worker = HubWorker(WorkerConfig(hub_id=hub_id, amqp_url=amqp_url(), prefetch=prefetch,
                                    node_prefetch=node_prefetch(), node_batch=node_batch()),
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
