"""Fixtures for the console's tests: a real hub with traffic, the console app on it, and
signed-in clients.

:func:`traffic` runs the real hub worker (:func:`tests.support.hub.running_hub`): G22
sends a document with an attachment holding :data:`MARKER` to H41 and H49, H41 answers
03, and a tampered package of G22's is refused. The console is the real Starlette app on
the hub's database, driven with Starlette's ``TestClient``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from tests.support.hub import Hub, running_hub
from vdx.console import users
from vdx.console.app import ConsoleConfig, create_app
from vdx.core import model

MARKER = b"VDX-ATTACHMENT-SECRET-7f3a9c"
ATTACHMENT = MARKER * 40
PASSWORD = "correct horse battery"
ADMIN, AUDITOR = "an.admin", "binh.auditor"


def attachment_traces() -> list[bytes]:
    """What a leaked attachment would show: its bytes, or a stretch of their base64."""
    return [MARKER, base64.b64encode(ATTACHMENT)[8:60]]


@dataclass
class Traffic:
    hub: Hub
    document_id: str
    refused_document_id: str

    @property
    def g22(self):
        return self.hub.agency("G22")

    @property
    def h41(self):
        return self.hub.agency("H41")

    @property
    def h49(self):
        return self.hub.agency("H49")


def make_traffic(hub: Hub) -> Traffic:
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    attachment = model.Attachment("giay-moi.pdf", "application/pdf", ATTACHMENT)
    g22.send(g22.document(h41.code, h49.code, attachments=(attachment,)))
    (doc,) = h41.inbox(1)
    h49.inbox(1)
    g22.inbox(3)  # accepted, delivered twice
    document_id = doc.headers["x-vdx-document-id"]
    h41.send(h41.status(g22.code, document_id, "03"))
    g22.inbox(1)
    h41.inbox(2)
    refused_id = f"{g22.code},2026/11/22,99/TAMPERED"
    signed = g22.document(h41.code, document_id=refused_id)
    g22.send(signed.replace("Thử nghiệm trục".encode(), "Đã sửa đổi".encode(), 1))
    (rejected,) = g22.inbox(1)
    assert rejected.receipt.kind == "rejected"
    return Traffic(hub, document_id, refused_id)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Iterator[Traffic]:
    with running_hub("sqlite", tmp_path_factory.mktemp("console")) as hub:
        found = make_traffic(hub)
        with hub.admin.transaction() as session:
            users.add_user(session, ADMIN, "admin", PASSWORD, actor="test")
            users.add_user(session, AUDITOR, "auditor", PASSWORD, actor="test")
        yield found


def console_app(hub: Hub, **options):
    config = ConsoleConfig(hub.config, "k" * 43, **options)
    return create_app(config, engine=hub.engine, api=hub.admin.api)


@pytest.fixture(scope="module")
def app(traffic):
    return console_app(traffic.hub)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD, next_: str = "/"):
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf": csrf_of(page.text), "next": next_})


@pytest.fixture
def auditor(app) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        assert sign_in(c, AUDITOR).status_code == 303
        yield c


@pytest.fixture
def admin(app) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        assert sign_in(c, ADMIN).status_code == 303
        yield c
