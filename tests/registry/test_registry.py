"""vdx.registry on SQLite and PostgreSQL: validation, lifecycle, rotation, the admin log, and
the verifier's ``registered`` lookup."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tests.support.registry import (
    TestPki,
    database,
    empty_tables,
    expired_certificate,
    other_root_certificate,
    pem,
    unique_code,
)
from vdx import store
from vdx.core.identifiers import identifier_problem
from vdx.errors import RegistryError, SignatureError
from vdx.registry import nodes as registry
from vdx.xmldsig import pki

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
ACTOR = "admin@test"


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory) -> TestPki:
    return TestPki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tmp_path_factory) -> Engine:
    with database(request.param, tmp_path_factory.mktemp("db")) as engine:
        yield engine


@pytest.fixture
def sessions(engine):
    yield store.session_factory(engine)
    empty_tables(engine)


@pytest.fixture(scope="module")
def check(test_pki):
    return test_pki.check()


def register(sessions, test_pki, check, code=None, **kw):
    code = code or unique_code()
    certificate = kw.pop("certificate", None) or test_pki.issue(code)
    with sessions.begin() as session:
        node = registry.register_node(session, code, kw.pop("name", "Sở Nội vụ"),
                                      pem(certificate), check=check, actor=ACTOR, **kw)
    return node, certificate


def refused(code: str, sessions, fn, *args, **kwargs) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        with sessions.begin() as session:
            fn(session, *args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


# ----------------------------------------------------------------------- registering


def test_register_records_the_node_its_certificate_and_the_action(sessions, test_pki, check):
    node, cert = register(sessions, test_pki, check, parent_code="H41", email="vt@nghean.gov.vn")
    assert (node.status, node.parent_code, node.email) == ("active", "H41", "vt@nghean.gov.vn")
    assert node.created_at.tzinfo is not None
    with sessions() as session:
        assert registry.get_node(session, node.code) == node
        assert registry.node_status(session, node.code) == "active"
        [held] = registry.certificate_history(session, node.code)
        assert held.status == "current"
        assert held.fingerprint == registry.fingerprint_of(cert)
        assert held.serial == pki.serial_hex(cert.serial_number)
        assert held.certificate == cert
        [entry] = registry.admin_log(session, node.code)
    assert (entry.actor, entry.action, entry.target, entry.before) == (
        ACTOR, "register", node.code, None)
    assert entry.after["status"] == "active"
    assert entry.after["certificates"][0]["fingerprint"] == held.fingerprint
    assert "pem" not in entry.after["certificates"][0]


@pytest.mark.parametrize("code", ["28.22.H17", "000.00.00.h41", " H41", "vxp.saas.03", ""])
def test_malformed_codes_are_refused_with_the_identifier_reason(sessions, test_pki, check, code):
    error = refused("registry.bad_code", sessions, registry.register_node, code, "x",
                    pem(test_pki.issue("H41.T1")), check=check, actor=ACTOR)
    assert identifier_problem(code) in error.message


@pytest.mark.parametrize("form", ["vxp.saas.t{}", "01.{}.G22", "001.{}.20.TT2"])
def test_a_nonstandard_code_needs_the_explicit_option(sessions, test_pki, check, form):
    code = form.format(unique_code().split(".T")[1].lower())
    error = refused("registry.bad_code", sessions, registry.register_node, code, "x",
                    pem(test_pki.issue(code)), check=check, actor=ACTOR)
    assert identifier_problem(code) in error.message
    assert "--allow-nonstandard-code" in error.message
    node, _ = register(sessions, test_pki, check, code, allow_nonstandard=True)
    assert node.code == code
    with sessions.begin() as session:
        assert registry.node_status(session, code) == "active"


@pytest.mark.parametrize("code, says", [
    ("vxp saas 03", "contains ' '"), ("vxp/saas", "contains '/'"), (".vxp", "start and end"),
    ("vdx.gateway", "the hub's own broker accounts"), ("VDX.X1", "the hub's own broker"),
])
def test_even_with_the_option_a_code_must_name_a_node_safely(sessions, test_pki, check,
                                                             code, says):
    error = refused("registry.bad_code", sessions, registry.register_node, code, "x",
                    pem(test_pki.issue("H41.T1")), check=check, actor=ACTOR,
                    allow_nonstandard=True)
    assert says in error.message


def test_malformed_parent_and_contact_are_refused(sessions, test_pki, check):
    code = unique_code()
    cert = pem(test_pki.issue(code))
    refused("registry.bad_code", sessions, registry.register_node, code, "x", cert,
            check=check, actor=ACTOR, parent_code="h41")
    refused("registry.bad_code", sessions, registry.register_node, code, "x", cert,
            check=check, actor=ACTOR, parent_code=code)
    refused("registry.bad_details", sessions, registry.register_node, code, "x", cert,
            check=check, actor=ACTOR, email="Sở Nội vụ")
    refused("registry.bad_details", sessions, registry.register_node, code, "  ", cert,
            check=check, actor=ACTOR)


def test_a_code_is_registered_once_and_never_reused(sessions, test_pki, check):
    node, _ = register(sessions, test_pki, check)
    refused("registry.duplicate_node", sessions, registry.register_node, node.code, "x",
            pem(test_pki.issue(node.code)), check=check, actor=ACTOR)
    with sessions.begin() as session:
        registry.revoke_node(session, node.code, actor=ACTOR)
    error = refused("registry.duplicate_node", sessions, registry.register_node, node.code,
                    "x", pem(test_pki.issue(node.code)), check=check, actor=ACTOR)
    assert "never reused" in error.message


def test_certificate_problems_have_their_own_codes(sessions, test_pki, check):
    code = unique_code()
    cases = [
        ("registry.certificate_expired", pem(expired_certificate(test_pki, code))),
        ("registry.certificate_expired",
         pem(test_pki.issue(code, now=store.utcnow() + timedelta(days=3)))),
        ("registry.certificate_wrong_agency", pem(test_pki.issue(unique_code()))),
        ("registry.certificate_untrusted", pem(other_root_certificate(code))),
        ("registry.bad_certificate", pem(test_pki.root[1])),
        ("registry.bad_certificate",
         b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"),
        ("registry.bad_certificate", b"not a certificate"),
        ("registry.bad_certificate", pem(test_pki.issue(code)) + pem(test_pki.issue(code))),
    ]
    for expected, data in cases:
        refused(expected, sessions, registry.register_node, code, "x", data, check=check,
                actor=ACTOR)
    with sessions() as session:
        assert registry.find_node(session, code) is None


def test_a_certificate_without_agency_code_is_not_for_any_agency(sessions, test_pki, check):
    key, root = test_pki.root
    leaf_key = pki.generate_key(ec_key=True)
    now = store.utcnow()
    cert = pki.issue_certificate(key, root, pki.x509.Name([]), leaf_key.public_key(),
                                 not_before=now - timedelta(minutes=5),
                                 not_after=now + timedelta(days=1))
    error = refused("registry.certificate_wrong_agency", sessions, registry.register_node,
                    unique_code(), "x", pem(cert), check=check, actor=ACTOR)
    assert "organizationIdentifier" in error.message


def test_a_revoked_certificate_is_refused(sessions, tmp_path, check):
    own = TestPki.create(tmp_path / "ca")
    code = unique_code()
    cert = own.issue(code)
    own.revoke(cert)
    refused("registry.certificate_revoked", sessions, registry.register_node, code, "x",
            pem(cert), check=own.check(), actor=ACTOR)


def test_the_verifier_chain_check_is_what_registration_uses(test_pki):
    # Same question, same answer: what the registry accepts the hub will accept.
    code = unique_code()
    with pytest.raises(RegistryError) as info:
        test_pki.check()(other_root_certificate(code), store.utcnow())
    assert isinstance(info.value.__cause__, SignatureError)
    assert info.value.__cause__.code == "signature.untrusted_certificate"


# ----------------------------------------------------------------------- lifecycle


def test_suspend_resume_revoke_and_the_admin_log(sessions, test_pki, check):
    node, _ = register(sessions, test_pki, check)
    code = node.code
    with sessions.begin() as session:
        assert registry.suspend_node(session, code, actor=ACTOR).changed
        assert not registry.suspend_node(session, code, actor=ACTOR).changed  # no-op, no log
        assert registry.list_nodes(session, "suspended")[-1].code == code
        transition = registry.resume_node(session, code, actor=ACTOR)
        assert (transition.before.status, transition.after.status) == ("suspended", "active")
        registry.revoke_node(session, code, actor=ACTOR)
    refused("registry.node_revoked", sessions, registry.resume_node, code, actor=ACTOR)
    refused("registry.node_revoked", sessions, registry.suspend_node, code, actor=ACTOR)
    with sessions() as session:
        log = registry.admin_log(session, code)
        assert [e.action for e in log] == ["register", "suspend", "resume", "revoke"]
        assert [(e.before["status"], e.after["status"]) for e in log[1:]] == [
            ("active", "suspended"), ("suspended", "active"), ("active", "revoked")]
        # Revoking keeps the history.
        assert len(registry.certificate_history(session, code)) == 1
        assert registry.get_node(session, code).status == "revoked"


def test_unknown_nodes(sessions):
    for fn in (registry.get_node, registry.certificate_history, registry.registered_certificates):
        refused("registry.unknown_node", sessions, fn, "000.00.00.H99")
    refused("registry.unknown_node", sessions, registry.suspend_node, "000.00.00.H99",
            actor=ACTOR)
    with sessions() as session:
        assert registry.node_status(session, "000.00.00.H99") is None
        assert registry.find_node(session, "000.00.00.H99") is None


def test_a_refused_change_leaves_nothing_behind(sessions, test_pki, check):
    # The shell's transaction rolls back: no node, no certificate, no log entry.
    code = unique_code()
    with pytest.raises(RuntimeError):
        with sessions.begin() as session:
            registry.register_node(session, code, "x", pem(test_pki.issue(code)), check=check,
                                   actor=ACTOR)
            raise RuntimeError("the broker refused")
    with sessions() as session:
        assert registry.find_node(session, code) is None
        assert registry.admin_log(session, code) == ()


# --------------------------------------------------------- certificates and rotation


def test_registered_certificates_refuse_senders_that_may_not_send(sessions, test_pki, check):
    node, cert = register(sessions, test_pki, check)
    with sessions.begin() as session:
        assert registry.registered_certificates(session, node.code) == (cert,)
        registry.suspend_node(session, node.code, actor=ACTOR)
    refused("registry.node_suspended", sessions, registry.registered_certificates, node.code)
    with sessions.begin() as session:
        registry.revoke_node(session, node.code, actor=ACTOR)
    refused("registry.node_revoked", sessions, registry.registered_certificates, node.code)


def test_rotation_keeps_the_old_certificate_during_the_overlap_only(sessions, test_pki, check):
    node, old = register(sessions, test_pki, check)
    new = test_pki.issue(node.code)
    now = store.utcnow()
    with sessions.begin() as session:
        rotated = registry.rotate_cert(session, node.code, pem(new), check=check, actor=ACTOR,
                                       overlap_days=2, now=now)
    assert rotated.status == "current" and rotated.certificate == new
    with sessions() as session:
        lookup = registry.registered_lookup(session)
        assert lookup(node.code) == (new, old)  # current first
        later = now + timedelta(days=2, seconds=1)
        assert registry.registered_certificates(session, node.code, later) == (new,)
        history = registry.certificate_history(session, node.code, later)
        assert [c.status for c in history] == ["retired", "current"]
        assert history[0].retired_at == now + timedelta(days=2)
        [*_, entry] = registry.admin_log(session, node.code)
    assert entry.action == "rotate_cert"
    assert [c["status"] for c in entry.before["certificates"]] == ["current"]
    assert [c["status"] for c in entry.after["certificates"]] == ["previous", "current"]
    with sessions.begin() as session:
        assert registry.retire_lapsed(session, later) == 1
        assert registry.retire_lapsed(session, later) == 0


def test_a_second_rotation_retires_the_older_previous(sessions, test_pki, check):
    node, first = register(sessions, test_pki, check)
    second, third = test_pki.issue(node.code), test_pki.issue(node.code)
    with sessions.begin() as session:
        registry.rotate_cert(session, node.code, pem(second), check=check, actor=ACTOR)
        registry.rotate_cert(session, node.code, pem(third), check=check, actor=ACTOR)
        assert registry.registered_certificates(session, node.code) == (third, second)
        statuses = [c.status for c in registry.certificate_history(session, node.code)]
    assert statuses == ["retired", "previous", "current"]


def test_rotation_without_overlap_retires_at_once(sessions, test_pki, check):
    node, _ = register(sessions, test_pki, check)
    new = test_pki.issue(node.code)
    with sessions.begin() as session:
        registry.rotate_cert(session, node.code, pem(new), check=check, actor=ACTOR,
                             overlap_days=0)
        assert registry.registered_certificates(session, node.code) == (new,)


def test_rotation_refusals(sessions, test_pki, check):
    node, current = register(sessions, test_pki, check)
    other, _ = register(sessions, test_pki, check)
    error = refused("registry.certificate_in_use", sessions, registry.rotate_cert, node.code,
                    pem(current), check=check, actor=ACTOR)
    assert node.code in error.message
    refused("registry.certificate_wrong_agency", sessions, registry.rotate_cert, node.code,
            pem(test_pki.issue(other.code)), check=check, actor=ACTOR)
    refused("registry.certificate_expired", sessions, registry.rotate_cert, node.code,
            pem(expired_certificate(test_pki, node.code)), check=check, actor=ACTOR)
    with sessions.begin() as session:
        registry.revoke_node(session, node.code, actor=ACTOR)
    refused("registry.node_revoked", sessions, registry.rotate_cert, node.code,
            pem(test_pki.issue(node.code)), check=check, actor=ACTOR)


def test_a_suspended_node_may_rotate(sessions, test_pki, check):
    node, _ = register(sessions, test_pki, check)
    with sessions.begin() as session:
        registry.suspend_node(session, node.code, actor=ACTOR)
        registry.rotate_cert(session, node.code, pem(test_pki.issue(node.code)), check=check,
                             actor=ACTOR)


# ----------------------------------------------- the signature verifier reads the registry


def test_the_verifier_pins_signatures_to_the_registry(sessions, test_pki, check):
    from tests.support.sigkit import package
    from vdx.xmldsig.sign import Signer
    from vdx.xmldsig.verify import Verifier

    code = unique_code()
    old_key, old = test_pki.issue_with_key(code)
    register(sessions, test_pki, check, code=code, certificate=old)
    signed_before = Signer(old_key, old).sign(package(code))
    verifier = Verifier(test_pki.trust)
    with sessions() as session:
        verified = verifier.verify(signed_before, code, registry.registered_lookup(session))
        assert verified.certificate == old

    new_key, new = test_pki.issue_with_key(code)
    with sessions.begin() as session:
        registry.rotate_cert(session, code, pem(new), check=check, actor=ACTOR, overlap_days=1)
    with sessions() as session:
        # In flight during the overlap: still verifies.
        verifier.verify(signed_before, code, registry.registered_lookup(session))
        verifier.verify(Signer(new_key, new).sign(package(code)), code,
                        registry.registered_lookup(session))
        # After it: the old certificate no longer speaks for the node.
        after = functools.partial(registry.registered_certificates, session,
                                  now=store.utcnow() + timedelta(days=1, minutes=1))
        with pytest.raises(SignatureError) as wrong:
            verifier.verify(signed_before, code, after)
        assert wrong.value.code == "signature.wrong_signer"
    with sessions.begin() as session:
        registry.suspend_node(session, code, actor=ACTOR)
    with sessions() as session, pytest.raises(RegistryError) as info:
        verifier.verify(signed_before, code, registry.registered_lookup(session))
    assert info.value.code == "registry.node_suspended"
