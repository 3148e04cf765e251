"""A real hub for integration tests: database, broker vhost, PKI, agencies, a worker.

:func:`running_hub` gives a :class:`Hub` with a worker thread consuming a fresh vhost's
``vdx.hub.submit`` and agencies (:class:`Agency`) registered through
:class:`vdx.registry.admin.Admin` with their own broker accounts, which sign, send and
read their inboxes over AMQP.
Nothing is mocked: RabbitMQ, the database and the signatures are the real ones.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pika
from sqlalchemy import Engine

from tests.support.registry import TestPki, database, pem, temp_vhost, unique_code
from vdx import build, store
from vdx.broker import provision
from vdx.core import model
from vdx.core.receipts import parse_receipt
from vdx.hub.supervisor import load_services
from vdx.hub.worker import HubWorker, WorkerConfig
from vdx.registry.admin import Admin, HubConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer

HUB_ID = "test-hub"


@dataclass
class Message:
    body: bytes
    type: str
    message_id: str
    headers: dict

    @property
    def receipt(self):
        return parse_receipt(self.body) if self.type == "vdx.receipt" else None


@dataclass
class Agency:
    code: str
    signer: Signer
    amqp_url: str
    _connection: pika.BlockingConnection | None = field(default=None, repr=False)

    @property
    def account(self) -> str:
        """The node's broker user (``CODE@VHOST`` in a test vhost), the ``user_id`` the
        broker stamps on what it publishes."""
        return unquote(urlsplit(self.amqp_url).username or "")

    @property
    def channel(self):
        if self._connection is None or self._connection.is_closed:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
            self._ch = self._connection.channel()
            self._ch.confirm_delivery()
        return self._ch

    def document(self, *to: str, document_id: str | None = None, business=None,
                 attachments=()) -> bytes:
        package = model.DocumentPackage(
            sender=model.Organization(self.code), recipients=tuple(model.Organization(t)
                                                                    for t in to),
            document_id=document_id or f"{self.code},2026/11/22,{uuid.uuid4().hex[:8]}/TEST",
            code=model.Code("1", "TEST"),
            promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
            document_type=model.DocumentType(1, "Công văn"), subject="Thử nghiệm trục",
            signer=model.SignerInfo("Nguyễn Văn A"), business=business,
            attachments=tuple(attachments))
        return self.signer.sign(build(package))

    def status(self, about_sender: str, document_id: str, code: str = "03") -> bytes:
        from datetime import datetime

        package = model.StatusPackage(
            sender=model.Organization(self.code),
            response_for=model.ResponseFor(about_sender, "1/TEST", document_id),
            staff=model.StaffInfo("Văn thư", "B"), status_code=code,
            description=model.STATUS_MEANINGS[code][0],
            timestamp=datetime.now(model.VIETNAM_TZ).replace(microsecond=0))
        return self.signer.sign(build(package))

    def send(self, body: bytes, *, message_id: str | None = None,
             user_id: str | None = None) -> str:
        message_id = message_id or str(uuid.uuid4())
        self.channel.basic_publish(
            provision.SUBMIT_EXCHANGE, self.code, body,
            pika.BasicProperties(delivery_mode=2, user_id=user_id or self.account,
                                 message_id=message_id))
        return message_id

    @property
    def queues(self) -> tuple[str, str]:
        """What the hub fills for this node: its receipts queue and its inbox."""
        return provision.receipts_queue(self.code), provision.inbox_queue(self.code)

    def inbox(self, count: int, timeout: float = 20.0) -> list[Message]:
        """Exactly ``count`` messages (acknowledged) from the node's receipts queue and
        inbox, or fail after ``timeout`` seconds."""
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            taken = self._take(count - len(got))
            if not taken:
                time.sleep(0.05)
            got.extend(taken)
        assert len(got) == count, f"{self.code} got {len(got)} of {count}: " \
                                  f"{[(m.type, m.receipt and m.receipt.kind) for m in got]}"
        return got

    def drain(self, settle: float = 0.5) -> list[Message]:
        """Everything that arrives until the receipts queue and the inbox stay empty for
        ``settle`` seconds."""
        got, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < settle:
            taken = self._take()
            if not taken:
                time.sleep(0.05)
                continue
            got.extend(taken)
            quiet_since = time.monotonic()
        return got

    def _take(self, limit: int = 2) -> list[Message]:
        """At most one message from each of the node's queues, ``limit`` in all."""
        got: list[Message] = []
        for queue in self.queues:
            if len(got) >= limit:
                break
            method, props, body = self._get(queue)
            if method is not None:
                got.append(Message(body, props.type, props.message_id,
                                   dict(props.headers or {})))
        return got

    def _get(self, queue: str):
        try:
            return self.channel.basic_get(queue, auto_ack=True)
        except pika.exceptions.AMQPConnectionError:  # the broker restarted: connect again
            self._connection = None
            time.sleep(0.5)
            return None, None, None

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()


@dataclass
class Hub:
    config: HubConfig
    admin: Admin
    engine: Engine
    vhost: str
    pki: TestPki
    agencies: dict[str, Agency]
    worker: HubWorker | None = None
    thread: threading.Thread | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{quote(self.vhost, safe='')}"

    def agency(self, prefix: str) -> Agency:
        return self.agencies[prefix]

    def add_agency(self, prefix: str) -> Agency:
        code = unique_code(prefix)
        key, cert = self.pki.issue_with_key(code)
        _node, credentials = self.admin.register(code, f"Cơ quan {prefix}", pem(cert))
        agency = Agency(code, Signer(key, cert), credentials.amqp_url)
        self.agencies[prefix] = agency
        return agency

    def start(self) -> None:
        self.worker = HubWorker(
            WorkerConfig(hub_id=HUB_ID, amqp_url=self.amqp_url, prefetch=100),
            store.session_factory(self.engine), load_services(self.config))
        self.thread = threading.Thread(target=self.worker.run_forever, daemon=True)
        self.thread.start()

    def environment(self) -> dict[str, str]:
        """The environment a ``vdx`` subprocess needs to serve this hub (SQLite only)."""
        import os

        assert self.engine.url.get_backend_name() == "sqlite", "subprocesses need a URL"
        return os.environ | {
            "VDX_DATABASE_URL": str(self.engine.url), "VDX_AMQP_URL": self.amqp_url,
            "VDX_PKI_DIR": str(self.config.pki_dir), "VDX_TRUST_DIR": str(self.config.trust_dir),
            "VDX_HUB_ID": HUB_ID,
        }

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()
            self.thread.join(15)
            assert not self.thread.is_alive(), "the hub worker did not stop"
            self.worker = None


def register_offline(engine: Engine, test_pki: TestPki, prefixes: tuple[str, ...], *,
                     actor: str = "test") -> tuple[dict[str, Agency], HubConfig]:
    """Agencies registered straight in ``engine``'s registry (no broker), by prefix, and
    the hub's configuration for a worker on the in-memory broker."""
    from sqlalchemy.orm import sessionmaker

    from vdx.broker.provision import BrokerSettings
    from vdx.registry import nodes as registry

    agencies = {}
    with sessionmaker(engine).begin() as session:
        for prefix in prefixes:
            code = unique_code(prefix)
            key, cert = test_pki.issue_with_key(code)
            registry.register_node(session, code, f"Cơ quan {prefix}", pem(cert),
                                   check=test_pki.check(), actor=actor)
            agencies[prefix] = Agency(code, Signer(key, cert), "amqp://unused")
    config = HubConfig(str(engine.url), BrokerSettings("http://unused", "guest", "guest"),
                       test_pki.path, test_pki.path, actor)
    return agencies, config


@contextmanager
def running_hub(backend: str, tmp: Path, agencies=("G22", "H41", "H49"),
                start: bool = True) -> Iterator[Hub]:
    """A hub with ``agencies`` registered; its worker runs in a thread when ``start``."""
    test_pki = TestPki.create(tmp / "pki")
    pki.issue_hub(test_pki.path, ec_key=True)
    with database(backend, tmp) as engine, temp_vhost() as (api, vhost):
        config = HubConfig(str(engine.url), api.settings, test_pki.path, test_pki.path,
                           "test-admin")
        hub = Hub(config, Admin(config, engine=engine, api=api), engine, vhost, test_pki, {})
        for prefix in agencies:
            hub.add_agency(prefix)
        if start:
            hub.start()
        try:
            yield hub
        finally:
            hub.stop()
            for agency in hub.agencies.values():
                agency.close()
