"""A running VXP gateway on a running hub, and a VXP SDK client for it, for the tests.

:func:`running_gateway` adds connected systems to a :func:`tests.support.hub.running_hub`
(provisioning the gateway's broker account in the hub's test vhost), and serves the
gateway in-process with Starlette's ``TestClient`` (its lifespan starts the inbox
drainer). :class:`VxpSystem` speaks to it exactly as the Java SDK would
(:class:`vdx_adapters.gateway.SdkService`): a new service object, so a new timestamp,
per call unless the test keeps one.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient
from vdx_adapters.gateway import Gateway, GatewayConfig, SdkService, WireRequest, create_app
from vdx_adapters.gateway import systems as gateway_systems

from tests.support.hub import Agency, Hub


@dataclass
class VxpSystem:
    """One connected system as its agency software sees the gateway."""

    system_id: str
    secret: str
    nodes: tuple[str, ...]
    http: TestClient = field(repr=False)

    def service(self, created: datetime | None = None) -> SdkService:
        return SdkService(self.system_id, self.secret, created=created or datetime.now(UTC))

    def send(self, request: WireRequest) -> tuple[int, dict]:
        response = self.http.request(request.method, f"/{request.operation}",
                                     headers=list(request.headers), content=request.body)
        assert response.headers["content-type"].startswith("application/json")
        return response.status_code, response.json()

    def call(self, operation: str, params: dict | None = None, **kwargs) -> dict:
        """One call through a fresh SDK service object; the JSON answer."""
        return self.send(self.service().build(operation, params or {}, **kwargs))[1]

    def send_edoc(self, package: bytes, sender: str | None = None,
                  messagetype: str = "edoc") -> dict:
        return self.call("sendEdoc", {"from": sender or self.nodes[0], "servicetype": "eDoc",
                                      "messagetype": messagetype}, file=package)

    def received(self, messagetype: str = "edoc") -> list[dict]:
        answer = self.call("getReceivedEdocList", {"servicetype": "eDoc",
                                                   "messagetype": messagetype})
        assert answer["status"] == "OK", answer
        return answer["data"]

    def wait_for(self, count: int, messagetype: str = "edoc", timeout: float = 20.0,
                 ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.received(messagetype)
            if len(items) >= count or time.monotonic() > deadline:
                assert len(items) == count, f"{self.system_id}: {len(items)} of {count}"
                return items
            time.sleep(0.1)

    def get_edoc(self, doc_id: str) -> bytes:
        answer = self.call("getEdoc", {"filePath": "xml", "docId": doc_id})
        assert answer["status"] == "OK", answer
        return base64.b64decode(answer["data"])

    def update(self, doc_id: str, status: str) -> dict:
        return self.call("updateStatus", {"status": status, "docId": doc_id})

    def sent(self, doc_id: str = "", messagetype: str = "edoc") -> list[dict]:
        answer = self.call("getSentEdocList", {"servicetype": "eDoc",
                                               "messagetype": messagetype, "docId": doc_id})
        assert answer["status"] == "OK", answer
        return answer["data"]

    def wait_sent(self, doc_id: str, check, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.sent(doc_id)
            if check(lines) or time.monotonic() > deadline:
                assert check(lines), lines
                return lines
            time.sleep(0.1)


@dataclass
class GatewayWorld:
    hub: Hub
    gateway: Gateway
    http: TestClient
    systems: dict[str, VxpSystem]
    credentials: Path

    def system(self, name: str) -> VxpSystem:
        return self.systems[name]

    def add_system(self, name: str, *nodes: str) -> VxpSystem:
        new = gateway_systems.add_system(self.hub.admin, f"dms.{name}.{os.getpid()}",
                                         nodes, credentials_file=self.credentials)
        system = VxpSystem(new.system.system_id, new.secret, new.system.nodes, self.http)
        self.systems[name] = system
        return system


@contextmanager
def running_gateway(hub: Hub, tmp: Path, served: dict[str, str],
                    clock: Callable[[], datetime] | None = None) -> Iterator[GatewayWorld]:
    """Serve a gateway on ``hub``; ``served`` maps a system name to an agency prefix;
    ``clock`` replaces the gateway's (to age requests without waiting)."""
    credentials = tmp / "gateway-broker.json"
    first, *rest = served.items()
    new = gateway_systems.add_system(hub.admin, f"dms.{first[0]}.{os.getpid()}",
                                     (hub.agency(first[1]).code,), credentials_file=credentials)
    url = json.loads(credentials.read_text())["amqp_url"]
    gateway = Gateway(GatewayConfig(hub.config, url, refresh_seconds=0.3), engine=hub.engine,
                      **({"clock": clock} if clock is not None else {}))
    with TestClient(create_app(gateway)) as http:
        world = GatewayWorld(hub, gateway, http, {}, credentials)
        world.systems[first[0]] = VxpSystem(new.system.system_id, new.secret,
                                            new.system.nodes, http)
        for name, prefix in rest:
            world.add_system(name, hub.agency(prefix).code)
        assert gateway.drainer.ready.wait(10)
        yield world


@contextmanager
def serve_http(gateway: Gateway) -> Iterator[str]:
    """``gateway`` on a real socket (uvicorn in a thread, a free port), for clients that
    are not Python, such as the Java SDK; yields the endpoint URL. The gateway's lifecycle
    (its inbox drainer) stays with whoever started it."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(gateway, manage_lifecycle=False),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def write_key(agency: Agency, directory: Path, mode: int = 0o600) -> tuple[Path, Path]:
    """The agency's key and certificate as files (the key with ``mode``)."""
    key = directory / f"{agency.code}.key"
    key.write_bytes(agency.signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key.chmod(mode)
    cert = directory / f"{agency.code}.pem"
    cert.write_bytes(agency.signer.certificate.public_bytes(serialization.Encoding.PEM))
    return key, cert
