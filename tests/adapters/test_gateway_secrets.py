"""Connected systems' secrets at rest, their rotation, and a node served two ways.

``vdx init`` creates the key beside the hub's key (mode 0600); secrets are stored only
encrypted with it; migration 0008 encrypts the plain secrets of an older registry, whose
systems keep authenticating; ``vdx gateway rotate-secret`` issues a new secret and the
old one is refused; ``add-system`` warns when another client already reads a node's inbox.
"""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime

import pika
import pytest
from sqlalchemy import create_engine, insert, select
from vdx_adapters.gateway import Gateway, GatewayConfig, auth, keyfile
from vdx_adapters.gateway import systems as gateway_systems
from vdx_adapters.gateway import tables as gateway
from vdx_adapters.gateway.sdk import SdkService
from vdx_adapters.gateway.service import Admitted

from tests.cli.test_cli_registry import Hub
from tests.support.hub import running_hub
from tests.support.registry import database, temp_vhost, unique_code
from vdx import store
from vdx.registry.admin import HubConfig
from vdx.xmldsig import pki

NO_KEY = {"VDX_GATEWAY_KEY": None, "VDX_GATEWAY_KEY_FILE": None}
LISTING = {"servicetype": "eDoc", "messagetype": "edoc"}


@pytest.fixture(scope="module")
def broker():
    with temp_vhost() as (api, vhost):
        yield api, vhost


def key_path(home) -> object:
    return pki.CaDir(home / "pki").hub_cert.parent / keyfile.KEY_FILE_NAME


@pytest.mark.rabbitmq
def test_init_creates_the_key_beside_the_hubs_key_and_secrets_are_sealed_with_it(
        tmp_path, broker, monkeypatch):
    hub = Hub(tmp_path, *broker)
    first = hub("init", **NO_KEY)
    path = key_path(tmp_path)
    assert f"gateway key  created: {path}" in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent == pki.CaDir(tmp_path / "pki").hub_cert.parent
    key = path.read_text()
    assert f"gateway key  present: {path}" in hub("init", **NO_KEY).stdout
    assert path.read_text() == key  # never replaced

    code = unique_code("H41")
    hub.register(code, "--credentials-file", str(tmp_path / "node.json"))
    added = hub("gateway", "add-system", "dms.sealed", "--node", code, "--json",
                "--credentials-file", str(tmp_path / "gw.json"), **NO_KEY)
    secret = json.loads(added.stdout)["secret"]
    stored = _stored(tmp_path, "dms.sealed")
    assert stored.startswith("fernet:") and secret not in stored
    assert gateway.open_secret(stored, key.strip()) == secret

    rotated = hub("gateway", "rotate-secret", "dms.sealed", "--json", **NO_KEY)
    new = json.loads(rotated.stdout)["secret"]
    assert new != secret and new not in _stored(tmp_path, "dms.sealed")
    for name, value in (hub.env | NO_KEY).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    served = Gateway(GatewayConfig(HubConfig.from_env(), "amqp://unused@127.0.0.1/"))
    try:
        old = served.admit("getReceivedEdocList", "POST", SdkService(
            "dms.sealed", secret).build("getReceivedEdocList", LISTING).headers)
        assert old[1]["ErrorCode"] == "gateway.bad_signature"
        assert isinstance(served.admit("getReceivedEdocList", "POST", SdkService(
            "dms.sealed", new).build("getReceivedEdocList", LISTING).headers), Admitted)
    finally:
        served.engine.dispose()
    plain = hub("gateway", "rotate-secret", "dms.sealed", **NO_KEY)
    assert "secret   " in plain.stdout and "old secret no longer works" in plain.stderr
    refused = hub("gateway", "rotate-secret", "nobody.here", ok=False, **NO_KEY)
    assert refused.exit_code == 1 and "gateway.unknown_system" in refused.output


def _stored(home, system_id: str) -> str:
    engine = create_engine(f"sqlite:///{home / 'vdx.db'}")
    try:
        with engine.connect() as connection:
            return connection.scalar(select(gateway.GatewaySystemRow.secret)
                                     .where(gateway.GatewaySystemRow.system_id == system_id))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_migration_0008_encrypts_plain_secrets_and_their_systems_still_authenticate(
        backend, tmp_path, monkeypatch):
    monkeypatch.setenv("VDX_PKI_DIR", str(tmp_path / "pki"))
    for name in NO_KEY:
        monkeypatch.delenv(name, raising=False)
    created = datetime(2026, 11, 22, tzinfo=UTC)
    with database(backend, tmp_path, revision="0007_node_limits") as engine:
        with engine.begin() as connection:
            connection.execute(insert(gateway.GatewaySystemRow.__table__).values(
                system_id="old.system", secret="plain:the-old-secret", created_at=created,
                created_by="admin"))
        assert not key_path(tmp_path).exists()
        assert store.migrate(engine, "0008_gateway_secrets") == "0008_gateway_secrets"
        path = key_path(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # made where the runtime looks
        with store.session_factory(engine)() as session:
            _, stored = gateway.find_system(session, "old.system")
        assert stored.startswith("fernet:") and "the-old-secret" not in stored
        secret = gateway.open_secret(stored, keyfile.require_key())
        request = SdkService("old.system", "the-old-secret").build("getReceivedEdocList",
                                                                  LISTING)
        signed = auth.authenticate(auth.read_auth_headers(request.headers), secret,
                                   now=datetime.now(UTC), rule=auth.TimestampRule())
        assert signed.system_id == "old.system"
        store.migrate(engine, "0008_gateway_secrets")  # again: nothing to do
        assert store.migrate(engine, "head")
        from alembic import command

        command.downgrade(store._alembic_config(engine), "0007_node_limits")
        with engine.connect() as connection:
            assert connection.scalar(select(gateway.GatewaySystemRow.secret)) == \
                "plain:the-old-secret"


def test_a_key_file_others_may_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VDX_GATEWAY_KEY_FILE", str(tmp_path / "k"))
    monkeypatch.delenv("VDX_GATEWAY_KEY", raising=False)
    made = keyfile.ensure_key()
    assert made.created and keyfile.ensure_key() == keyfile.GatewayKey(made.key, made.source)
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(Exception) as info:
        keyfile.load_key()
    assert info.value.code == "gateway.bad_key" and "chmod 600" in info.value.message


# ------------------------------------------------------------- one node, two consumers


@pytest.mark.rabbitmq
def test_add_system_warns_when_another_client_reads_the_nodes_inbox(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22",)) as hub:
        busy, idle = hub.add_agency("H71"), hub.add_agency("H72")
        connection = pika.BlockingConnection(pika.URLParameters(busy.amqp_url))
        try:
            channel = connection.channel()
            channel.basic_consume(f"vdx.node.{busy.code}.inbox", lambda *a: None)
            deadline = time.monotonic() + 20
            while not gateway_systems.shared_inboxes(hub.admin, (busy.code,)):
                assert time.monotonic() < deadline, "the broker never listed the consumer"
                time.sleep(0.2)
            credentials = tmp_path / "gw.json"
            new = gateway_systems.add_system(hub.admin, "dms.busy", (busy.code,),
                                             credentials_file=credentials)
            (warning,) = new.warnings
            assert busy.code in warning and "split between them" in warning
            assert gateway_systems.add_system(hub.admin, "dms.idle", (idle.code,),
                                              credentials_file=credentials).warnings == ()
            from vdx.registry import doctor

            found = [f for f in doctor.diagnose(hub.admin) if "split between" in f.detail]
            assert [(f.area, f.status) for f in found] == [(f"node {busy.code}", "warning")]
        finally:
            connection.close()
