"""Revocation along the whole chain: root → intermediate CA → agency certificate.

A revoked intermediate CA revokes every certificate it issued: the verifier refuses their
packages, and the registry refuses to register them. Each certificate but the anchor
needs a current CRL of its issuer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.sigkit import G22, H41, package
from vdx.errors import RegistryError, SignatureError
from vdx.registry.nodes import trust_check
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer
from vdx.xmldsig.trust import TrustStore
from vdx.xmldsig.verify import VerificationPolicy, Verifier

NOW = datetime.now(UTC)


class Chain:
    """A TEST root, an intermediate CA under it, and two agencies under that."""

    def __init__(self) -> None:
        self.root_key, self.root = pki.create_root("VDX TEST Root for chains", ec_key=True)
        self.ca_key, self.ca = pki.issue_intermediate(self.root_key, self.root,
                                                      "VDX TEST Ministry CA", ec_key=True)
        self.leaves = {code: pki.issue_agency_certificate(self.ca_key, self.ca, code,
                                                          f"Agency {code}", ec_key=True)
                       for code in (G22, H41)}

    def root_crl(self, revoked=(), *, number: int = 1, now: datetime = NOW):
        return pki.build_crl(self.root_key, self.root, {s: NOW for s in revoked},
                             number=number, now=now)

    def ca_crl(self, revoked=(), *, number: int = 1):
        return pki.build_crl(self.ca_key, self.ca, {s: NOW for s in revoked}, number=number)

    def store(self, *crls) -> TrustStore:
        return TrustStore((self.root,), (self.ca,), tuple(crls))

    def signed(self, code: str) -> bytes:
        key, cert = self.leaves[code]
        return Signer(key, cert).sign(package(code))

    def registered(self, code: str):
        return [self.leaves[code][1]]

    def verify(self, store: TrustStore, code: str = G22, **policy):
        return Verifier(store, VerificationPolicy(**policy)).verify(
            self.signed(code), code, self.registered)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


def refusal(run) -> SignatureError:
    with pytest.raises(SignatureError) as err:
        run()
    return err.value


def test_a_chain_with_current_crls_at_every_level_verifies(chain):
    verified = chain.verify(chain.store(chain.root_crl(), chain.ca_crl()))
    assert verified.certificate == chain.leaves[G22][1]


def test_a_revoked_intermediate_refuses_every_certificate_under_it(chain):
    store = chain.store(chain.root_crl([chain.ca.serial_number]), chain.ca_crl())
    for code in (G22, H41):
        err = refusal(lambda code=code: chain.verify(store, code))
        assert err.code == "signature.revoked_certificate"
        assert "intermediate CA" in err.message and "VDX TEST Ministry CA" in err.message
        assert f"0x{chain.ca.serial_number:x}" in err.message


def test_a_revoked_intermediate_is_refused_even_without_the_crl_policy(chain):
    store = chain.store(chain.root_crl([chain.ca.serial_number]))
    err = refusal(lambda: chain.verify(store, require_crl=False))
    assert err.code == "signature.revoked_certificate"


def test_a_revoked_leaf_under_the_intermediate_is_refused_alone(chain):
    store = chain.store(chain.root_crl(), chain.ca_crl([chain.leaves[G22][1].serial_number]))
    err = refusal(lambda: chain.verify(store, G22))
    assert err.code == "signature.revoked_certificate"
    assert "the signer certificate" in err.message and "intermediate" not in err.message
    assert chain.verify(store, H41).sender_code == H41


def test_the_intermediates_revocation_status_must_be_known(chain):
    without_root_crl = chain.store(chain.ca_crl())
    err = refusal(lambda: chain.verify(without_root_crl))
    assert err.code == "signature.revocation_unknown"
    assert "VDX TEST Root for chains" in err.message
    assert chain.verify(without_root_crl, require_crl=False).sender_code == G22


def test_a_stale_root_crl_makes_the_intermediate_unknown(chain):
    long_ago = NOW - timedelta(days=30)
    stale = chain.store(chain.root_crl(now=long_ago), chain.ca_crl())
    err = refusal(lambda: chain.verify(stale))
    assert err.code == "signature.revocation_unknown"
    assert "not current" in err.message


def test_a_cached_chain_sees_a_later_revocation_of_its_intermediate(chain):
    # A verifier that verified the chain once keeps it; revocation is still asked each time.
    clean = chain.store(chain.root_crl(), chain.ca_crl())
    verifier = Verifier(clean)
    assert verifier.verify(chain.signed(G22), G22, chain.registered).sender_code == G22
    revoked = chain.store(chain.root_crl([chain.ca.serial_number], number=2), chain.ca_crl())
    verifier.trust = revoked  # a new trust store, as a restarted hub would load
    err = refusal(lambda: verifier.verify(chain.signed(G22), G22, chain.registered))
    assert err.code == "signature.revoked_certificate"


def test_the_registry_refuses_a_certificate_under_a_revoked_intermediate(chain):
    store = chain.store(chain.root_crl([chain.ca.serial_number]), chain.ca_crl())
    with pytest.raises(RegistryError) as err:
        trust_check(store)(chain.leaves[G22][1], datetime.now(UTC))
    assert err.value.code == "registry.certificate_revoked"
    trust_check(chain.store(chain.root_crl(), chain.ca_crl()))(chain.leaves[G22][1],
                                                                datetime.now(UTC))


def test_a_trust_directory_with_the_intermediate_and_both_crls(chain, tmp_path):
    pem = Encoding.PEM
    (tmp_path / "ca").mkdir()
    (tmp_path / "crl").mkdir()
    (tmp_path / "ca" / "root.pem").write_bytes(chain.root.public_bytes(pem))
    (tmp_path / "ca" / "ministry.pem").write_bytes(chain.ca.public_bytes(pem))
    (tmp_path / "crl" / "ministry.crl.pem").write_bytes(chain.ca_crl().public_bytes(pem))
    (tmp_path / "crl" / "root.crl.pem").write_bytes(
        chain.root_crl([chain.ca.serial_number]).public_bytes(pem))
    store = TrustStore.from_dir(tmp_path)
    assert store.intermediates == (chain.ca,)
    assert refusal(lambda: chain.verify(store)).code == "signature.revoked_certificate"
    (tmp_path / "crl" / "root.crl.pem").write_bytes(chain.root_crl(number=2)
                                                    .public_bytes(pem))
    assert chain.verify(TrustStore.from_dir(tmp_path)).sender_code == G22


def test_the_intermediate_profile(chain):
    from cryptography import x509

    constraints = chain.ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert constraints.value.path_length == 0
    assert chain.ca.issuer == chain.root.subject
