"""The registry commands (``vdx init``, ``vdx node …``, ``vdx doctor``) through click's
CliRunner, each test with its own SQLite file and PKI under ``tmp_path``, all on the real
broker in a vhost of this module's own."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from vdx_cli.cli import main

from tests.support.registry import (
    TestPki,
    expired_certificate,
    other_root_certificate,
    pem,
    temp_vhost,
    unique_code,
)
from vdx import store
from vdx.broker import provision
from vdx.xmldsig import pki

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def broker():
    with temp_vhost() as (api, vhost):
        yield api, vhost


class Hub:
    """One admin's environment: a home with database and PKI, and a way to run ``vdx``."""

    def __init__(self, home: Path, api, vhost: str) -> None:
        self.home, self.api, self.vhost = home, api, vhost
        settings = api.settings
        self.env = {
            "VDX_HOME": str(home), "VDX_DATABASE_URL": None, "VDX_PKI_DIR": None,
            "VDX_TRUST_DIR": None, "VDX_MANAGEMENT_URL": None, "VDX_ACTOR": "quản trị viên",
            "VDX_AMQP_URL": f"amqp://{settings.user}:{settings.password}@{settings.amqp_host}:"
                            f"{settings.amqp_port}/{vhost}",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True, **env: str):
        result = self.runner.invoke(main, list(args), env=self.env | env)
        # Never a traceback: every failure is a message and an exit code.
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def refused(self, *args: str, expect: str, **env: str) -> str:
        result = self(*args, ok=False, **env)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], result.stderr
        return lines[0]

    @property
    def pki(self) -> TestPki:
        return TestPki(self.home / "pki")

    def cert_file(self, code: str, cert=None) -> str:
        path = self.home / f"{code}-{len(list(self.home.glob('*.pem')))}.pem"
        path.write_bytes(pem(cert) if cert is not None else pem(self.pki.issue(code)))
        return str(path)

    def register(self, code: str, *extra: str):
        return self("node", "register", code, "--name", "Sở Nội vụ", "--cert",
                    self.cert_file(code), *extra)


@pytest.fixture
def hub(tmp_path, broker) -> Hub:
    hub = Hub(tmp_path, *broker)
    hub("init")
    return hub


def show(hub: Hub, code: str) -> dict:
    return json.loads(hub("node", "show", code, "--json").stdout)


# ------------------------------------------------------------------------- lifecycle


def test_the_whole_lifecycle_from_a_fresh_database(hub):
    a, b = unique_code(), unique_code()
    registered = hub.register(a, "--parent", "H41", "--email", "vanthu@nghean.gov.vn")
    assert f"registered {a}" in registered.stdout
    assert "password" in registered.stdout and "shown once" in registered.stderr
    data = json.loads(hub("node", "register", b, "--name", "Sở Tư pháp", "--cert",
                          hub.cert_file(b), "--json").stdout)
    # Accounts are named per vhost: another hub on this broker never shares one.
    assert data["code"] == b and data["credentials"]["username"] == f"{b}@{hub.vhost}"
    assert data["broker_user"] == f"{b}@{hub.vhost}"

    listed = json.loads(hub("node", "list", "--json").stdout)
    assert [n["code"] for n in listed] == sorted([a, b])
    assert hub("node", "suspend", b).stdout.strip() == f"{b}: active → suspended"
    assert hub("node", "suspend", b).stdout.strip() == f"{b} is already suspended"
    assert [n["code"] for n in json.loads(hub("node", "list", "--status", "suspended",
                                              "--json").stdout)] == [b]
    hub("node", "resume", b)
    hub("node", "rotate-cert", a, "--cert", hub.cert_file(a), "--overlap-days", "3")
    hub("node", "credentials", a, "--reset")
    assert "revoked" in hub("node", "revoke", b).stdout
    assert "H41" in hub("node", "list").stdout

    view = show(hub, a)
    assert (view["status"], view["parent_code"], view["email"]) == (
        "active", "H41", "vanthu@nghean.gov.vn")
    assert [c["status"] for c in view["certificates"]] == ["previous", "current"]
    assert [e["action"] for e in view["admin_log"]] == [
        "register", "rotate_cert", "reset_credentials"]
    assert {e["actor"] for e in view["admin_log"]} == {"quản trị viên"}
    assert [e["action"] for e in show(hub, b)["admin_log"]] == [
        "register", "suspend", "resume", "revoke"]
    text = hub("node", "show", a).stdout
    assert "previous" in text and "rotate_cert" in text

    doctor = hub("doctor", "--json")
    findings = json.loads(doctor.stdout)
    assert {f["status"] for f in findings} == {"ok"}, findings
    assert {f["area"] for f in findings} >= {"database", "broker", "topology",
                                             "hub certificate", f"node {a}", f"node {b}"}


def test_init_is_idempotent_and_creates_the_hub_certificate_once(hub):
    cert = pki.CaDir(hub.home / "pki").hub_cert
    first = cert.read_bytes()
    again = hub("init")
    assert "present" in again.stdout
    assert cert.read_bytes() == first


def test_init_without_a_ca_can_refuse_to_make_a_test_one(tmp_path, broker):
    fresh = Hub(tmp_path, *broker)
    fresh.refused("init", "--no-dev-ca", expect="no hub certificate")


def test_credentials_go_to_a_private_file_when_asked(hub):
    code = unique_code()
    out = hub.home / "creds.json"
    result = hub.register(code, "--credentials-file", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    password = json.loads(out.read_text())["password"]
    assert password not in result.output
    reset = hub("node", "credentials", code, "--reset", "--credentials-file", str(out))
    assert json.loads(out.read_text())["password"] != password
    assert "written to" in reset.stdout


# ------------------------------------------------------------------------- bad input


def test_bad_input_gets_one_line_and_a_non_zero_exit(hub):
    code = unique_code()
    hub.register(code)
    other = unique_code()
    cases = [
        (("node", "register", "28.22.H17", "--name", "x", "--cert", hub.cert_file(other)),
         "registry.bad_code: agency code: '28.22.H17' has 3 groups"),
        (("node", "register", code, "--name", "x", "--cert", hub.cert_file(code)),
         "registry.duplicate_node"),
        (("node", "register", other, "--name", "x", "--cert",
          hub.cert_file(other, expired_certificate(hub.pki, other))),
         "registry.certificate_expired"),
        (("node", "register", other, "--name", "x", "--cert", hub.cert_file(code)),
         "registry.certificate_wrong_agency"),
        (("node", "register", other, "--name", "x", "--cert",
          hub.cert_file(other, other_root_certificate(other))),
         "registry.certificate_untrusted"),
        (("node", "suspend", "000.00.00.H99"), "registry.unknown_node"),
        (("node", "credentials", code), "pass --reset"),
    ]
    for args, expected in cases:
        hub.refused(*args, expect=expected)
    current = show(hub, code)["certificates"][0]["fingerprint"]
    same = hub.home / "again.pem"
    same.write_bytes(pem(next(iter(_registered(hub, code)))))
    hub.refused("node", "rotate-cert", code, "--cert", str(same),
                expect=f"registry.certificate_in_use: certificate {current[:16]}")
    hub("node", "revoke", code)
    hub.refused("node", "resume", code, expect="registry.node_revoked")
    hub.refused("node", "credentials", code, "--reset", expect="registry.node_revoked")
    missing = hub("node", "register", other, "--name", "x", "--cert", "/nonexistent.pem",
                  ok=False)
    assert missing.exit_code == 2 and "cannot read /nonexistent.pem" in missing.stderr


def test_a_nonstandard_code_is_registered_only_when_asked(hub):
    import secrets

    code = f"vxp.saas.t{secrets.token_hex(3)}"
    hub.refused("node", "register", code, "--name", "Hệ thống thử nghiệm", "--cert",
                hub.cert_file(code), expect="--allow-nonstandard-code")
    result = hub.register(code, "--allow-nonstandard-code", "--json")
    node = json.loads(result.stdout)
    account = f"{code}@{hub.vhost}"
    assert node["code"] == code and node["credentials"]["username"] == account
    queue = hub.api.get(f"queues/{hub.vhost}/vdx.node.{code}.inbox")
    assert queue is not None and queue["type"] == "quorum"
    rights = hub.api.get(f"permissions/{hub.vhost}/{quote(account, safe='')}")
    escaped = code.replace(".", "\\.")
    assert rights["read"] == f"^(vdx\\.node\\.{escaped}\\.inbox|vdx\\.node\\.{escaped}\\.receipts)$"
    assert show(hub, code)["status"] == "active"


def test_no_node_takes_over_a_broker_account_that_is_not_a_nodes(hub):
    api, vhost = hub.api, hub.vhost
    own = api.settings.user  # the hub's own login (guest here)
    # In a vhost of its own a node's account is CODE@VHOST, never the hub's login...
    hub.register(own, "--allow-nonstandard-code")
    assert api.get(f"users/{own}")["tags"]  # untouched
    hub.refused("node", "register", "vdx.gateway", "--name", "x", "--cert",
                hub.cert_file("vdx.gateway"), "--allow-nonstandard-code",
                expect="hub's own broker accounts")
    # ...and a user of that name that is someone else's is never taken over: an
    # administrator (tags), or another application with other rights in this vhost.
    admin, app = unique_code(), unique_code()
    for code, tags, rights in ((admin, "administrator", None), (app, "", ".*")):
        user = quote(f"{code}@{vhost}", safe="")
        api.put(f"users/{user}", {"password": "theirs", "tags": tags})
        if rights:
            api.put(f"permissions/{vhost}/{user}",
                    {"configure": rights, "write": rights, "read": rights})
    hub.refused("node", "register", admin, "--name", "x", "--cert", hub.cert_file(admin),
                expect="has the tags administrator")
    hub.refused("node", "register", app, "--name", "x", "--cert", hub.cert_file(app),
                expect="other rights in this vhost")
    assert api.get(f"permissions/{vhost}/{quote(f'{app}@{vhost}', safe='')}")["read"] == ".*"


def _registered(hub: Hub, code: str):
    from vdx.registry import nodes as registry

    engine = store.make_engine(f"sqlite:///{hub.home / 'vdx.db'}")
    try:
        with store.session_factory(engine)() as session:
            return registry.registered_certificates(session, code)
    finally:
        engine.dispose()


def test_commands_before_init_say_to_run_it(tmp_path, broker):
    fresh = Hub(tmp_path, *broker)
    fresh.refused("node", "list", expect="is not initialised; run `vdx init`")


# --------------------------------------------------------------- failures and repair


def test_a_broker_failure_leaves_nothing_half_registered(hub):
    code = unique_code()
    cert = hub.cert_file(code)
    line = hub.refused("node", "register", code, "--name", "x", "--cert", cert,
                       expect="transport.unavailable",
                       VDX_MANAGEMENT_URL="http://127.0.0.1:1")
    assert "rabbitmq_management" in line
    assert json.loads(hub("node", "list", "--json").stdout) == []
    # The same command, once the broker answers, completes the job.
    hub("node", "register", code, "--name", "x", "--cert", cert)
    assert show(hub, code)["status"] == "active"


def test_a_crash_after_the_broker_changed_is_repaired_by_running_again(hub, monkeypatch):
    import pika

    from vdx.broker import provision
    from vdx.errors import TransportError

    real = provision.provision_node

    def provision_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise TransportError("transport.unavailable", "the hub died before committing")

    code = unique_code()
    cert = hub.cert_file(code)
    monkeypatch.setattr(provision, "provision_node", provision_then_crash)
    hub.refused("node", "register", code, "--name", "x", "--cert", cert,
                expect="died before committing")
    monkeypatch.setattr(provision, "provision_node", real)
    assert json.loads(hub("node", "list", "--json").stdout) == []
    # the broker half happened
    assert provision.account_exists(hub.api, provision.node_account(code, hub.vhost))
    # Running the same command again completes it, with a password the admin now knows.
    data = json.loads(hub("node", "register", code, "--name", "x", "--cert", cert,
                          "--json").stdout)
    pika.BlockingConnection(pika.URLParameters(data["credentials"]["amqp_url"])).close()


def test_doctor_finds_drift_and_its_fixes_work(hub):
    code, orphan = unique_code(), unique_code()
    hub.register(code)
    api, vhost = hub.api, hub.vhost
    api.delete(f"users/{quote(f'{code}@{vhost}', safe='')}")
    binding = api.get(f"bindings/{vhost}/e/vdx.submit.unrouted/q/vdx.hub.submit")[0]
    api.delete(f"bindings/{vhost}/e/vdx.submit.unrouted/q/vdx.hub.submit/"
               f"{binding['properties_key']}")
    api.put(f"users/{orphan}", {"password": "x", "tags": ""})
    api.put(f"permissions/{vhost}/{orphan}", {"configure": "", "write": "", "read": ""})

    result = hub("doctor", ok=False)
    assert result.exit_code == 1
    findings = {(f["area"], f["status"]): f for f in json.loads(
        hub("doctor", "--json", ok=False).stdout)}
    assert findings[(f"node {code}", "error")]["fix"].startswith(
        f"`vdx node credentials {code} --reset`")
    assert findings[("topology", "error")]["fix"] == "run `vdx init`"
    assert "delete_user" in findings[(f"account {orphan}", "warning")]["fix"]

    hub("init")
    hub("node", "credentials", code, "--reset")
    api.delete(f"users/{orphan}")
    assert hub("doctor").exit_code == 0


def test_init_gives_nodes_from_before_a_receipts_queue_and_doctor_says_so(hub):
    """A registry from before receipts queues: the node has an inbox and rights on it
    only. Doctor names the missing queue; `vdx init` creates it and its rights."""
    code = unique_code()
    hub.register(code)
    api, vhost = hub.api, hub.vhost
    account = quote(f"{code}@{vhost}", safe="")
    api.delete(f"queues/{vhost}/{quote(provision.receipts_queue(code), safe='')}")
    api.put(f"permissions/{vhost}/{account}", {
        "configure": "^$", "write": r"^vdx\.submit$",
        "read": f"^{provision.inbox_queue(code).replace('.', chr(92) + '.')}$"})
    found = [f for f in json.loads(hub("doctor", "--json", ok=False).stdout)
             if f["area"] == f"node {code}" and f["status"] == "error"]
    assert any(provision.receipts_queue(code) in f["detail"] and f["fix"] == "run `vdx init`"
               for f in found), found
    hub("init")
    assert api.get(f"queues/{vhost}/{quote(provision.receipts_queue(code), safe='')}")
    assert api.get(f"permissions/{vhost}/{account}")["read"] == \
        provision.node_permissions(code).read
    assert hub("doctor").exit_code == 0


def test_doctor_reports_an_unreachable_broker_and_expiring_certificates(hub):
    code = unique_code()
    soon = hub.pki.issue(code, days=10, now=store.utcnow() - timedelta(days=1))
    hub("node", "register", code, "--name", "x", "--cert", hub.cert_file(code, soon))
    findings = json.loads(hub("doctor", "--json").stdout)
    assert any(f["area"] == f"node {code}" and f["status"] == "warning"
               and "rotate-cert" in f["fix"] for f in findings)
    down = hub("doctor", ok=False, VDX_MANAGEMENT_URL="http://127.0.0.1:1")
    assert down.exit_code == 1 and "error    broker" in down.stdout


def test_trust_can_come_from_another_ca_directory(hub):
    # The `vdx ca` workflow: a development CA of its own, named with --trust.
    other = TestPki.create(hub.home / "other-ca")
    code = unique_code()
    cert = hub.cert_file(code, other.issue(code))
    hub.refused("node", "register", code, "--name", "x", "--cert", cert,
                expect="registry.certificate_untrusted")
    hub("node", "register", code, "--name", "x", "--cert", cert, "--trust", str(other.path))
    rotated = hub.cert_file(code, other.issue(code))
    hub("node", "rotate-cert", code, "--cert", rotated, VDX_TRUST_DIR=str(other.path))


# ------------------------------------------------------------- two hubs, one broker


def _connect(url: str):
    import pika

    return pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1"))


def test_two_hubs_on_one_broker_register_the_same_code_and_share_no_account(tmp_path, broker):
    import pika.exceptions

    with temp_vhost() as (api2, vhost2):
        homes = tmp_path / "first", tmp_path / "second"
        for home in homes:
            home.mkdir()
        first, second = Hub(homes[0], *broker), Hub(homes[1], api2, vhost2)
        first("init")
        second("init")
        code = unique_code()
        a = json.loads(first.register(code, "--json").stdout)["credentials"]
        b = json.loads(second.register(code, "--json").stdout)["credentials"]
        assert (a["username"], b["username"]) == (f"{code}@{first.vhost}", f"{code}@{vhost2}")
        _connect(a["amqp_url"]).close()  # the second registration took nothing from the first
        _connect(b["amqp_url"]).close()
        # The second hub's password opens nothing of the first hub's.
        stolen = provision_url(first, a["username"], b["password"])
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            _connect(stolen)
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            _connect(provision_url(first, b["username"], b["password"]))
        # Revoking the node in the second hub leaves the first hub's node working.
        second("node", "revoke", code)
        _connect(a["amqp_url"]).close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            _connect(b["amqp_url"])


def provision_url(hub: Hub, user: str, password: str) -> str:
    from tests.support.registry import amqp_url_for

    return amqp_url_for(hub.api, hub.vhost, user, password)


def test_an_account_with_rights_in_another_vhost_is_never_taken_over(tmp_path, broker):
    """Before accounts were named per vhost, a node logged in as its bare code; another
    hub's registry may still record that. Such an account is refused, not reset."""
    from vdx.broker import provision
    from vdx.errors import RegistryError

    api, vhost = broker
    code = unique_code()
    legacy = provision.provision_node(api, vhost, code, account=code)  # the first hub's
    try:
        with temp_vhost() as (api2, vhost2):
            with pytest.raises(RegistryError) as refused:
                provision.provision_node(api2, vhost2, code, account=code, new_password=True)
            assert refused.value.code == "registry.account_taken"
            assert vhost in refused.value.message
            provision.close_node_account(api2, vhost2, code, account=code)  # not its own
            _connect(legacy.amqp_url).close()
            assert api.get(f"permissions/{vhost}/{code}") is not None
    finally:
        api.delete(f"users/{code}")


def test_a_legacy_account_moves_to_its_per_vhost_name_on_reset(hub):
    """A registry from before: the node logs in as its bare code. `vdx init` and doctor
    say so; a credentials reset moves it to CODE@VHOST and closes the old name."""
    from sqlalchemy import text

    from vdx.broker import provision

    code = unique_code()
    hub.register(code)
    engine = store.make_engine(f"sqlite:///{hub.home / 'vdx.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE nodes SET broker_user = code WHERE code = :c"),
                               {"c": code})
    finally:
        engine.dispose()
    provision.close_node_account(hub.api, hub.vhost, code)  # its per-vhost account...
    legacy = provision.provision_node(hub.api, hub.vhost, code, account=code)  # ...was bare
    assert "--reset" in hub("init").stderr
    findings = json.loads(hub("doctor", "--json", ok=False).stdout)
    assert any(f["area"] == f"node {code}" and f["status"] == "warning" and
               "--reset" in f["fix"] for f in findings), findings

    moved = json.loads(hub("node", "credentials", code, "--reset", "--json").stdout)
    assert moved["username"] == f"{code}@{hub.vhost}"
    _connect(moved["amqp_url"]).close()
    assert not provision.account_exists(hub.api, code)
    import pika.exceptions
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _connect(legacy.amqp_url)
    assert show(hub, code)["broker_user"] == f"{code}@{hub.vhost}"
    assert [e["action"] for e in show(hub, code)["admin_log"]][-2:] == [
        "reset_credentials", "move_account"]
    assert hub("doctor").exit_code == 0
