"""Helpers for the registry, store, provisioning and isolation tests.

- :class:`TestPki`: a development CA (ECDSA, so a session's keys cost milliseconds)
  written with :mod:`vdx.xmldsig.pki` into a temporary directory, issuing agency certificates;
- :func:`database`: a migrated database on SQLite or PostgreSQL (a schema of its own in
  database ``test``, dropped afterwards);
- :func:`temp_vhost`: a uniquely named RabbitMQ vhost, deleted afterwards with every user
  the test created;
- :func:`unique_code`: agency codes (Decision 20/2020 form) no other run uses: broker
  users are global, not per vhost.

Missing servers skip, or fail under ``CI=true`` (:func:`tests.conftest.require_service`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tests.conftest import require_service
from vdx import store
from vdx.broker import provision
from vdx.errors import TransportError
from vdx.registry import nodes as registry
from vdx.xmldsig import pki
from vdx.xmldsig.trust import TrustStore

POSTGRES_URL = os.environ.get("VDX_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REGISTRY_TABLES = ("admin_log", "node_certificates", "nodes")


def unique_code(prefix: str = "H41") -> str:
    """A fresh, well-formed agency code such as ``H41.T9F3A1C``."""
    return f"{prefix}.T{secrets.token_hex(4).upper()}"


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# ------------------------------------------------------------------------------- PKI


@dataclass
class TestPki:
    """A CA directory with a fresh root and CRL; issues certificates for agencies."""

    __test__ = False  # not a test class, whatever its name

    path: Path

    @classmethod
    def create(cls, path: Path) -> TestPki:
        pki.init_ca(path, ec_key=True)
        return cls(path)

    @property
    def root(self) -> tuple[pki.PrivateKey, x509.Certificate]:
        return pki.CaDir(self.path).load_root()

    @property
    def trust(self) -> TrustStore:
        return TrustStore.from_dir(self.path)

    def check(self) -> registry.CertificateCheck:
        return registry.trust_check(self.trust)

    def issue(self, code: str, *, days: int = 365, now: datetime | None = None,
              name: str = "Cơ quan thử nghiệm") -> x509.Certificate:
        key, root = self.root
        return pki.issue_agency_certificate(key, root, code, name, days=days, now=now,
                                            ec_key=True)[1]

    def issue_with_key(self, code: str) -> tuple[pki.PrivateKey, x509.Certificate]:
        key, root = self.root
        return pki.issue_agency_certificate(key, root, code, "Cơ quan thử nghiệm",
                                            ec_key=True)

    def issue_file(self, code: str, directory: Path, **kwargs) -> Path:
        path = directory / f"{code}-{secrets.token_hex(3)}.pem"
        path.write_bytes(pem(self.issue(code, **kwargs)))
        return path

    def revoke(self, cert: x509.Certificate) -> None:
        """Put ``cert`` on the CRL (it must have been issued through the CA directory)."""
        issued = pki.CaDir(self.path).issued_dir / f"{pki.serial_hex(cert.serial_number)}.pem"
        issued.parent.mkdir(parents=True, exist_ok=True)
        issued.write_bytes(pem(cert))
        pki.revoke(self.path, cert.serial_number)


def other_root_certificate(code: str) -> x509.Certificate:
    """A certificate for ``code`` from a root nobody trusts."""
    key, root = pki.create_root("VDX TEST Rogue Root", ec_key=True)
    return pki.issue_agency_certificate(key, root, code, "Giả mạo", ec_key=True)[1]


def expired_certificate(test_pki: TestPki, code: str) -> x509.Certificate:
    return test_pki.issue(code, days=1, now=store.utcnow() - timedelta(days=30))


# -------------------------------------------------------------------------- databases


@contextmanager
def database(backend: str, tmp: Path, revision: str = "head") -> Iterator[Engine]:
    """An empty database on ``backend`` (``sqlite`` or ``postgresql``), migrated to
    ``revision`` (a migration test starts from an earlier one)."""
    if backend == "sqlite":
        engine = store.make_engine(f"sqlite:///{tmp / 'registry.db'}")
        store.migrate(engine, revision)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"vdx_test_{secrets.token_hex(4)}"
    admin = store.make_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL", f"{POSTGRES_URL}: {str(exc.orig).strip()}")
    # Every unqualified name, alembic_version included, lands in the test's own schema.
    engine = store.make_engine(POSTGRES_URL,
                               connect_args={"options": f"-csearch_path={schema}"})
    try:
        store.migrate(engine, revision)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def empty_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in REGISTRY_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))


# ----------------------------------------------------------------------------- broker


@contextmanager
def temp_vhost() -> Iterator[tuple[provision.ManagementApi, str]]:
    """A new vhost with the hub topology; removed afterwards with the users made in it."""
    settings = provision.BrokerSettings.from_env()
    vhost = f"vdx-test-{secrets.token_hex(4)}"
    api = provision.ManagementApi(provision.BrokerSettings(
        settings.api_url, settings.user, settings.password, vhost, settings.amqp_host,
        settings.amqp_port), timeout=5)
    try:
        provision.ensure_vhost(api, vhost)
    except TransportError as exc:
        require_service("RabbitMQ management API", exc.message)
    try:
        provision.ensure_topology(api, vhost)
        yield api, vhost
    finally:
        for perm in api.get(f"vhosts/{vhost}/permissions") or ():
            if perm["user"] != settings.user:
                api.delete(f"users/{quote(perm['user'], safe='')}")
        api.delete(f"vhosts/{vhost}")


def amqp_url_for(api: provision.ManagementApi, vhost: str, user: str, password: str) -> str:
    return provision.Credentials(user, password, vhost, api.settings.amqp_host,
                                 api.settings.amqp_port).amqp_url
