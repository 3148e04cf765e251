"""Verification, attacked: a table of hostile packages, each with the code it must produce.

Every case starts from a package correctly signed by a registered agency and does what
an attacker (or a careless signer) would. Each case runs twice: on a tree from the
hardened parser alone (the verifier's own wall, without the schema in front of it) and
on the raw bytes (the schema may refuse first; the table says which code then).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier

import vdx
from tests.support.sigkit import (
    C14N,
    DS,
    EXC_C14N,
    G22,
    H41,
    H49,
    NS,
    E,
    World,
    ds,
    find,
    package,
    reseal,
    set_key_info_cert,
    signature_of,
    to_bytes,
    tree_of,
)
from vdx.errors import SignatureError, VdxError
from vdx.xmldsig import pki
from vdx.xmldsig.verify import TrustStore, TrustStoreError, VerificationPolicy, Verified, Verifier

Registry = dict[str, list[x509.Certificate]]
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures


@dataclass(frozen=True)
class Built:
    data: bytes
    registry: Registry
    sender: str = G22


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[World], Built]
    code: str | None               # None: the package must verify
    bytes_code: str | None = "same"  # what verify(bytes) says, when the schema speaks first

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------ case builders --

def signed(world: World, code: str = G22, **kw) -> bytes:
    return world.agencies[code].signer.sign(package(code, **kw))


def edited(world: World, edit: Callable[[etree._ElementTree, World], object], *,
           by: str = G22, registry: Registry | None = None, sender: str = G22) -> Built:
    tree = tree_of(signed(world, by))
    edit(tree, world)
    return Built(to_bytes(tree), registry or world.registry(), sender)


def signed_by(attr: str) -> Callable[[World], Built]:
    def build(world: World) -> Built:
        agency = getattr(world, attr)
        return Built(agency.signer.sign(package()), world.registry(G22=agency))
    return build


def _signature(tree):
    return signature_of(tree)


def _header(tree):
    return find(tree, "/e:edXML/e:edXMLEnvelope/e:edXMLHeader")


def _subject(tree):
    return find(tree, "//e:MessageHeader/e:Subject")


def _make_evil(tree) -> None:
    _subject(tree).text = "Chuyển toàn bộ kinh phí vào tài khoản 0123"


def _transforms(tree):
    return find(tree, "//ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms")


def _resealed(edit: Callable[[etree._ElementTree], object], key_of: str = G22,
              *, digest: bool = True) -> Callable[[etree._ElementTree, World], object]:
    """Reshape SignedInfo, then sign it again with the registered key (a careless signer,
    not an attacker): only the policy can refuse what comes out."""
    def apply(tree, world: World) -> None:
        edit(tree)
        reseal(tree, world.agencies[key_of].key, digest=digest)
    return apply


def _move_signature(where: Callable[[etree._ElementTree], etree._Element], *,
                    before: bool = False):
    def edit(tree, world) -> None:
        signature = _signature(tree)
        target = where(tree)
        if before:
            target.addprevious(signature)
        else:
            target.append(signature)
    return edit


def _wrap(tree, keep_signature_in_copy: bool, keep_signature_in_place: bool,
          into: str = "//e:edXMLBody") -> None:
    original = copy.deepcopy(find(tree, "/e:edXML/e:edXMLEnvelope"))
    if not keep_signature_in_copy:
        original.find(f"{E}edXMLHeader").remove(next(original.iter(f"{{{DS}}}Signature")))
    if not keep_signature_in_place:
        _header(tree).remove(_signature(tree))
    _make_evil(tree)
    find(tree, into).append(original)


def _wrap_whole_document(world: World) -> Built:
    signed_root = tree_of(signed(world)).getroot()
    evil = tree_of(package(subject="giả mạo")).getroot()
    wrapper = etree.Element("Wrapper")
    wrapper.extend([signed_root, evil])
    return Built(to_bytes(wrapper), world.registry())


def _wrap_in_object(tree, world) -> None:
    obj = ds("Object")
    obj.append(copy.deepcopy(find(tree, "/e:edXML/e:edXMLEnvelope/e:edXMLBody")))
    _signature(tree).append(obj)
    _make_evil(tree)


def _comment_in_code(world: World) -> Built:
    data = signed(world)
    assert data.count(b"<edXML:CodeNumber>7816<") == 1
    return Built(data.replace(b"<edXML:CodeNumber>7816<", b"<edXML:CodeNumber>78<!--x-->16<"),
                 world.registry())


def _resigned_by_impostor(world: World) -> Built:
    return Built(world.impostor.signer.sign(package(subject="giả mạo")), world.registry())


def _other_key_registered_cert(tree, world) -> None:
    _make_evil(tree)
    reseal(tree, world.impostor.key)  # KeyInfo still names G22's registered certificate


def _swap_key_info(tree, world) -> None:
    set_key_info_cert(tree, world.agencies[H41].cert)


def _key_value_of_other_agency(tree, world) -> None:
    numbers = world.agencies[H41].cert.public_key().public_numbers()

    def b64(n: int) -> str:
        import base64
        return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()

    key_value = ds("KeyValue")
    rsa_value = etree.SubElement(key_value, f"{{{DS}}}RSAKeyValue")
    etree.SubElement(rsa_value, f"{{{DS}}}Modulus").text = b64(numbers.n)
    etree.SubElement(rsa_value, f"{{{DS}}}Exponent").text = b64(numbers.e)
    _signature(tree).find(f"{{{DS}}}KeyInfo").insert(0, key_value)


def _set_alg(path: str, uri: str):
    def edit(tree) -> None:
        find(tree, f"//ds:Signature/ds:SignedInfo/{path}").set("Algorithm", uri)
    return edit


def _both(*edits):
    def edit(tree) -> None:
        for e in edits:
            e(tree)
    return edit


def _hmac_with_public_key(tree, world: World) -> None:
    find(tree, "//ds:SignedInfo/ds:SignatureMethod").set("Algorithm", HMAC_SHA256)
    _signature(tree).remove(_signature(tree).find(f"{{{DS}}}KeyInfo"))
    public_pem = world.agencies[G22].cert.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    reseal(tree, public_pem)


def _insert_transform(algorithm: str, body: etree._Element | None = None):
    def edit(tree) -> None:
        transform = ds("Transform", Algorithm=algorithm)
        if body is not None:
            transform.append(body)
        _transforms(tree).insert(1, transform)
    return edit


def _xpath_body() -> etree._Element:
    xpath = etree.Element(f"{{{DS}}}XPath", nsmap={"ds": DS})
    xpath.text = "not(ancestor-or-self::ds:Signature)"
    return xpath


def _xslt_body() -> etree._Element:
    return etree.fromstring(
        b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        b'<xsl:template match="/"><xsl:copy-of select="document(\'file:///etc/passwd\')"/>'
        b'</xsl:template></xsl:stylesheet>')


def _drop_enveloped(tree) -> None:
    transforms = _transforms(tree)
    transforms.remove(transforms[0])


def _reference_uri(uri: str):
    def edit(tree) -> None:
        find(tree, "//ds:SignedInfo/ds:Reference").set("URI", uri)
    return edit


def _second_reference(tree) -> None:
    reference = find(tree, "//ds:SignedInfo/ds:Reference")
    reference.addnext(copy.deepcopy(reference))


def _no_reference(tree) -> None:
    reference = find(tree, "//ds:SignedInfo/ds:Reference")
    reference.getparent().remove(reference)


def _signature_value(change: Callable[[str], str]):
    def edit(tree, world) -> None:
        value = _signature(tree).find(f"{{{DS}}}SignatureValue")
        value.text = change(value.text or "")
    return edit


def _truncate_bytes(text: str) -> str:
    import base64
    return base64.b64encode(base64.b64decode(text)[:-16]).decode()


def _duplicate_signature(where: str | None):
    def edit(tree, world) -> None:
        twin = copy.deepcopy(_signature(tree))
        if where is None:
            _signature(tree).addnext(twin)
        else:
            find(tree, where).append(twin)
    return edit


def _placeholder(header: etree._Element) -> None:
    """What legacy software writes where the signature goes (vdx.core.quirks)."""
    placeholder = etree.SubElement(header, f"{E}Signature")
    etree.SubElement(placeholder, f"{E}SignatureValue").text = "AAAA"


def _placeholder_only(world: World) -> Built:
    tree = tree_of(package())
    _placeholder(_header(tree))
    return Built(to_bytes(tree), world.registry())


def _registered_as(code: str, registered_to: str):
    def build(world: World) -> Built:
        return Built(signed(world, code), {registered_to: [world.agencies[code].cert]},
                     registered_to)
    return build


CASES = [
    # -- what must pass -------------------------------------------------------------
    Case("valid_rsa", lambda w: Built(signed(w), w.registry()), None),
    Case("valid_ecdsa", lambda w: Built(signed(w, H49), w.registry(), H49), None),
    Case("valid_without_trace_list",
         lambda w: Built(w.agencies[G22].signer.sign(package(trace=False)), w.registry()), None),
    Case("comment_injected_in_signed_text", _comment_in_code, None),
    # -- where the signature is ----------------------------------------------------
    Case("unsigned", lambda w: Built(package(), w.registry()), "signature.missing"),
    Case("placeholder_only", _placeholder_only, "signature.placeholder"),
    Case("placeholder_beside_signature",
         lambda w: edited(w, lambda t, _: _placeholder(_header(t))), "signature.multiple"),
    Case("second_signature_next_to_it",
         lambda w: edited(w, _duplicate_signature(None)), "signature.multiple",
         "envelope.schema"),
    Case("second_signature_deep_in_body",
         lambda w: edited(w, _duplicate_signature("//e:edXMLManifest")), "signature.multiple",
         "envelope.schema"),
    Case("moved_to_end_of_root",
         lambda w: edited(w, _move_signature(lambda t: t.getroot())), "signature.misplaced",
         "envelope.schema"),
    Case("moved_into_body",
         lambda w: edited(w, _move_signature(lambda t: find(t, "//e:edXMLBody"))),
         "signature.misplaced", "envelope.schema"),
    Case("moved_before_trace_list",
         lambda w: edited(w, _move_signature(lambda t: find(t, "//e:TraceHeaderList"),
                                             before=True)),
         "signature.misplaced", "envelope.schema"),
    Case("moved_into_message_header",
         lambda w: edited(w, _move_signature(lambda t: find(t, "//e:MessageHeader"))),
         "signature.misplaced", "envelope.schema"),
    # -- signature wrapping --------------------------------------------------------
    Case("wrap_signed_copy_in_body_evil_unsigned_in_place",
         lambda w: edited(w, lambda t, _: _wrap(t, True, False)), "signature.misplaced",
         "envelope.schema"),
    Case("wrap_signed_copy_in_body_evil_signed_in_place",
         lambda w: edited(w, lambda t, _: _wrap(t, True, True)), "signature.multiple",
         "envelope.schema"),
    Case("wrap_unsigned_copy_in_body_signature_kept_in_place",
         lambda w: edited(w, lambda t, _: _wrap(t, False, True)), "signature.digest_mismatch",
         "envelope.schema"),
    Case("wrap_signed_copy_in_attachments",
         lambda w: edited(w, lambda t, _: _wrap(t, True, False, into="//e:AttachmentEncoded")),
         "signature.misplaced", "envelope.schema"),
    Case("wrap_original_body_in_ds_object",
         lambda w: edited(w, _wrap_in_object), "signature.digest_mismatch"),
    Case("wrap_whole_document", _wrap_whole_document, "signature.misplaced",
         "envelope.wrong_root"),
    # -- content and signer --------------------------------------------------------
    Case("content_changed", lambda w: edited(w, lambda t, _: _make_evil(t)),
         "signature.digest_mismatch"),
    Case("key_info_swapped_for_other_agency", lambda w: edited(w, _swap_key_info),
         "signature.wrong_signer"),
    Case("resigned_with_unregistered_key", _resigned_by_impostor, "signature.wrong_signer"),
    Case("resigned_with_other_key_registered_cert_kept",
         lambda w: edited(w, _other_key_registered_cert), "signature.invalid"),
    Case("no_key_info",
         lambda w: edited(w, lambda t, _: _signature(t).remove(
             _signature(t).find(f"{{{DS}}}KeyInfo"))), "signature.wrong_signer"),
    Case("key_value_of_other_agency", lambda w: edited(w, _key_value_of_other_agency),
         "signature.invalid"),
    Case("registered_certificate_of_other_agency", _registered_as(H41, G22),
         "signature.wrong_signer"),
    Case("nothing_registered", lambda w: Built(signed(w), {}), "signature.wrong_signer"),
    # -- algorithms ----------------------------------------------------------------
    Case("sha1_signature_and_digest", lambda w: edited(w, _resealed(_both(
        _set_alg("ds:SignatureMethod", RSA_SHA1),
        _set_alg("ds:Reference/ds:DigestMethod", SHA1)))), "signature.weak_algorithm"),
    Case("sha1_digest_only", lambda w: edited(w, _resealed(
        _set_alg("ds:Reference/ds:DigestMethod", SHA1))), "signature.weak_algorithm"),
    Case("sha1_signature_only", lambda w: edited(w, _resealed(
        _set_alg("ds:SignatureMethod", RSA_SHA1))), "signature.weak_algorithm"),
    Case("hmac_with_public_key_as_secret", lambda w: edited(w, _hmac_with_public_key),
         "signature.weak_algorithm"),
    # -- transforms and references -------------------------------------------------
    Case("xpath_transform", lambda w: edited(w, _resealed(_insert_transform(
        XPATH, _xpath_body()))), "signature.bad_transform"),
    Case("xslt_transform", lambda w: edited(w, _resealed(_insert_transform(
        XSLT, _xslt_body()))), "signature.bad_transform"),
    Case("c14n_with_comments_transform", lambda w: edited(w, _resealed(
        _set_alg("ds:Reference/ds:Transforms/ds:Transform[2]", EXC_C14N + "WithComments"))),
        "signature.bad_transform"),
    Case("signed_info_c14n_with_comments", lambda w: edited(w, _resealed(
        _set_alg("ds:CanonicalizationMethod", C14N + "#WithComments"))),
        "signature.bad_transform"),
    Case("no_enveloped_transform", lambda w: edited(w, _resealed(_drop_enveloped)),
         "signature.bad_transform"),
    Case("reference_to_an_id", lambda w: edited(w, _resealed(_reference_uri("#doc"))),
         "signature.misplaced"),
    Case("reference_xpointer", lambda w: edited(w, _resealed(_reference_uri("#xpointer(/)"))),
         "signature.misplaced"),
    Case("two_references", lambda w: edited(w, _resealed(_second_reference)),
         "signature.misplaced"),
    Case("no_reference", lambda w: edited(w, _resealed(_no_reference)), "signature.misplaced",
         "envelope.schema"),
    # -- certificates --------------------------------------------------------------
    Case("expired_certificate", signed_by("expired"), "signature.expired_certificate"),
    Case("not_yet_valid_certificate", signed_by("not_yet_valid"),
         "signature.expired_certificate"),
    Case("revoked_certificate", signed_by("revoked"), "signature.revoked_certificate"),
    Case("wrong_key_usage", signed_by("wrong_usage"), "signature.key_usage"),
    Case("untrusted_root", signed_by("untrusted"), "signature.untrusted_certificate"),
    # -- the signature value -------------------------------------------------------
    Case("empty_signature_value", lambda w: edited(w, _signature_value(lambda v: "")),
         "signature.invalid"),
    Case("truncated_signature_text", lambda w: edited(w, _signature_value(lambda v: v[:-7])),
         "signature.invalid", "envelope.schema"),
    Case("truncated_signature_bytes", lambda w: edited(w, _signature_value(_truncate_bytes)),
         "signature.invalid"),
    Case("truncated_ecdsa_signature",
         lambda w: edited(w, _signature_value(_truncate_bytes), by=H49, sender=H49),
         "signature.invalid"),
    Case("signature_value_of_another_package", lambda w: edited(w, _signature_value(
        lambda v: signature_of(tree_of(signed(w, subject="khác"))).find(
            f"{{{DS}}}SignatureValue").text)), "signature.invalid"),
]


def _expect(case_code: str | None, run: Callable[[], Verified]) -> Verified | None:
    if case_code is None:
        return run()
    with pytest.raises(VdxError) as err:
        run()
    assert err.value.code == case_code, err.value.message
    return None


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_tree(case: Case, world: World, verifier: Verifier) -> None:
    built = case.build(world)
    result = _expect(case.code, lambda: verifier.verify(
        tree_of(built.data), built.sender, lambda code: built.registry.get(code, [])))
    if result is not None:
        assert result.sender_code == built.sender
        assert result.certificate in built.registry[built.sender]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_bytes(case: Case, world: World, verifier: Verifier) -> None:
    built = case.build(world)
    code = case.code if case.bytes_code == "same" else case.bytes_code
    _expect(code, lambda: verifier.verify(
        built.data, built.sender, lambda code: built.registry.get(code, [])))


def test_every_signature_code_is_exercised() -> None:
    codes = {c.code for c in CASES} | {c.bytes_code for c in CASES}
    expected = {code for code in vdx.CATALOGUE if code.startswith("signature.")}
    assert expected - {"signature.revocation_unknown"} <= codes  # that one: below


# ----------------------------------------------------------- what the result holds --

def test_signed_tree_holds_only_the_signed_content(world: World, verifier: Verifier) -> None:
    built = _comment_in_code(world)
    raw = tree_of(built.data)
    naive = find(raw, "//e:Code/e:CodeNumber").text
    assert naive == "78"  # what a reader of the raw input would take as the number
    result = verifier.verify(raw, G22, world.registered)
    signed = result.signed_tree
    assert find(signed, "//e:Code/e:CodeNumber").text == "7816"
    assert not signed.xpath("//comment()")
    assert not signed.xpath("//ds:Signature", namespaces=NS)
    assert vdx.core.envelope.from_tree(signed).code.number == "7816"


def test_verify_leaves_the_input_tree_untouched(world: World, verifier: Verifier) -> None:
    tree = tree_of(signed(world))
    before = etree.tostring(tree)
    verifier.verify(tree, G22, world.registered)
    verifier.verify(tree.getroot(), G22, world.registered)
    assert etree.tostring(tree) == before


def test_verified_reports_the_signer_and_algorithms(world: World, verifier: Verifier) -> None:
    result = verifier.verify(signed(world), G22, world.registered)
    assert (result.signature_algorithm, result.digest_algorithm, result.c14n_algorithm) == (
        "rsa-sha256", "sha256", "exc-c14n")
    assert G22 in result.signer and result.serial == world.agencies[G22].cert.serial_number
    assert not result.legacy_sha1
    with pytest.raises(AttributeError):
        result.sender_code = H41  # type: ignore[misc]


def test_the_registry_may_return_new_objects_each_time(world: World, verifier: Verifier) -> None:
    pem = world.agencies[G22].cert.public_bytes(Encoding.PEM)
    result = verifier.verify(signed(world), G22,
                             lambda code: [x509.load_pem_x509_certificate(pem)])
    assert result.certificate == world.agencies[G22].cert


# ---------------------------------------------------------- policy and legacy SHA-1 --

def _sha1_package(world: World) -> bytes:
    tree = tree_of(signed(world))
    _set_alg("ds:SignatureMethod", RSA_SHA1)(tree)
    _set_alg("ds:Reference/ds:DigestMethod", SHA1)(tree)
    return to_bytes(reseal(tree, world.agencies[G22].key))


def test_sha1_is_accepted_for_a_named_legacy_sender_and_logged(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    legacy = Verifier(world.trust, VerificationPolicy(legacy_sha1_senders=frozenset({G22})))
    with caplog.at_level(logging.WARNING, logger="vdx.verify"):
        result = legacy.verify(_sha1_package(world), G22, world.registered)
    assert result.legacy_sha1 and result.signature_algorithm == "rsa-sha1"
    assert any("SHA-1" in r.getMessage() and G22 in r.getMessage() for r in caplog.records)


def test_legacy_permission_is_per_sender(world: World) -> None:
    legacy = Verifier(world.trust, VerificationPolicy(legacy_sha1_senders=frozenset({H41})))
    with pytest.raises(SignatureError) as err:
        legacy.verify(_sha1_package(world), G22, world.registered)
    assert err.value.code == "signature.weak_algorithm"


def test_legacy_sender_still_needs_a_valid_sha1_signature(world: World) -> None:
    legacy = Verifier(world.trust, VerificationPolicy(legacy_sha1_senders=frozenset({G22})))
    tree = tree_of(_sha1_package(world))
    _make_evil(tree)
    with pytest.raises(SignatureError) as err:
        legacy.verify(tree, G22, world.registered)
    assert err.value.code == "signature.digest_mismatch"


@pytest.mark.parametrize("kwargs", [
    {"signature_algorithms": frozenset({"rsa-sha1"})},
    {"digest_algorithms": frozenset({"sha256", "sha1"})},
    {"signature_algorithms": frozenset({"hmac-sha256"})},
    {"c14n_algorithms": frozenset({"exc-c14n-with-comments"})},
])
def test_policy_refuses_weak_or_unknown_algorithms(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        VerificationPolicy(**kwargs)


def test_policy_can_narrow_the_allow_list(world: World) -> None:
    rsa_only = Verifier(world.trust, VerificationPolicy(signature_algorithms=frozenset(
        {"rsa-sha256"})))
    with pytest.raises(SignatureError) as err:
        rsa_only.verify(signed(world, H49), H49, world.registered)
    assert err.value.code == "signature.weak_algorithm"


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        VerificationPolicy().require_crl = False  # type: ignore[misc]


# ---------------------------------------------------------- clock, CRL and trust --

def test_clock_decides_validity(world: World) -> None:
    data = signed(world)
    later = world.agencies[G22].cert.not_valid_after_utc + timedelta(days=1)
    late = Verifier(world.trust, VerificationPolicy(clock=lambda: later))
    with pytest.raises(SignatureError) as err:
        late.verify(data, G22, world.registered)
    assert err.value.code == "signature.expired_certificate"


def test_a_cached_chain_is_not_reused_outside_its_validity(world: World) -> None:
    now = [datetime.now(UTC)]
    moving = Verifier(world.trust, VerificationPolicy(clock=lambda: now[0], require_crl=False))
    data = signed(world)
    moving.verify(data, G22, world.registered)
    now[0] = world.root_cert.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(SignatureError) as err:
        moving.check_certificate(world.agencies[G22].cert)
    assert err.value.code == "signature.expired_certificate"


def test_stale_crl_means_revocation_unknown(world: World) -> None:
    in_a_month = datetime.now(UTC) + timedelta(days=30)
    stale = Verifier(world.trust, VerificationPolicy(clock=lambda: in_a_month))
    with pytest.raises(SignatureError) as err:
        stale.verify(signed(world), G22, world.registered)
    assert err.value.code == "signature.revocation_unknown"


def test_missing_crl_is_refused_unless_the_policy_allows_it(world: World) -> None:
    no_crl = TrustStore((world.root_cert,))
    with pytest.raises(SignatureError) as err:
        Verifier(no_crl).verify(signed(world), G22, world.registered)
    assert err.value.code == "signature.revocation_unknown"
    lenient = Verifier(no_crl, VerificationPolicy(require_crl=False))
    assert lenient.verify(signed(world), G22, world.registered).sender_code == G22


def test_trust_store_refuses_a_crl_no_anchor_signed(world: World, tmp_path) -> None:
    key, other = pki.create_root("Another TEST Root", ec_key=True)
    crl = pki.build_crl(key, other, {}, number=1)
    with pytest.raises(TrustStoreError, match="no CA in the trust store signed"):
        TrustStore((world.root_cert,), crls=(crl,))


def test_trust_store_keeps_the_newest_crl(world: World) -> None:
    old = pki.build_crl(world.root_key, world.root_cert, {}, number=1)
    new = pki.build_crl(world.root_key, world.root_cert,
                        {world.agencies[H41].cert.serial_number: datetime.now(UTC)},
                        number=99)
    store = TrustStore((world.root_cert,), crls=(new, old))
    assert store.crl_for(world.root_cert) is new
    with pytest.raises(SignatureError) as err:
        Verifier(store).verify(signed(world, H41), H41, world.registered)
    assert err.value.code == "signature.revoked_certificate"


def test_trust_store_from_dir_classifies_files(world: World, tmp_path) -> None:
    ca = pki.CaDir(world.ca_dir)
    store = TrustStore.from_dir(world.ca_dir)
    assert store.anchors == (world.root_cert,)  # agency and hub certificates are ignored
    assert len(store.crls) == 1
    flat = tmp_path / "trust"
    flat.mkdir()
    (flat / "root.crt").write_bytes(world.root_cert.public_bytes(Encoding.DER))
    (flat / "root.crl").write_bytes(ca.crl_file.read_bytes())
    (flat / "notes.txt").write_text("ignored")
    (flat / "stray.key").write_bytes(ca.agency_key(G22).read_bytes())
    flat_store = TrustStore.from_dir(flat)
    assert flat_store.anchors == (world.root_cert,) and len(flat_store.crls) == 1
    with pytest.raises(TrustStoreError, match="no trust anchor"):
        TrustStore.from_dir(tmp_path / "trust" / "..")  # tmp_path itself holds no roots


def test_intermediate_ca_from_the_trust_store_completes_the_chain(world: World) -> None:
    now = datetime.now(UTC)
    key = pki.generate_key()
    sub_cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                                            "VDX TEST Sub CA")]))
                .issuer_name(world.root_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(pki.CA_KEY_USAGE, critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    world.root_cert.public_key()), critical=False)
                .sign(world.root_key, __import__("cryptography.hazmat.primitives.hashes",
                                                 fromlist=["SHA256"]).SHA256()))
    leaf_key, leaf = pki.issue_agency_certificate(key, sub_cert, G22, "via sub CA")
    sub_crl = pki.build_crl(key, sub_cert, {}, number=1)
    from vdx.xmldsig.sign import Signer
    data = Signer(leaf_key, leaf).sign(package())
    registry = lambda code: [leaf]  # noqa: E731
    with pytest.raises(SignatureError) as err:
        Verifier(TrustStore((world.root_cert,))).verify(data, G22, registry)
    assert err.value.code == "signature.untrusted_certificate"
    # Every certificate but the anchor needs its issuer's CRL: the sub CA the root's.
    root_crl = pki.build_crl(world.root_key, world.root_cert, {}, number=1)
    store = TrustStore((world.root_cert,), (sub_cert,), (sub_crl, root_crl))
    assert Verifier(store).verify(data, G22, registry).certificate == leaf


# ---------------------------------------------- the checks that signxml alone lacks --

@pytest.mark.parametrize("case_name", ["xpath_transform", "xslt_transform"])
def test_signxml_alone_would_accept_what_the_policy_refuses(world: World,
                                                            case_name: str) -> None:
    """Shows the transform rule has teeth: bare signxml ignores these transforms."""
    case = next(c for c in CASES if c.name == case_name)
    built = case.build(world)
    result = XMLVerifier().verify(built.data, x509_cert=world.agencies[G22].cert)
    assert result.signed_xml is not None


def test_signxml_alone_would_accept_hmac_keyed_with_the_public_key(world: World) -> None:
    built = edited(world, _hmac_with_public_key)
    public_pem = world.agencies[G22].cert.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    result = XMLVerifier().verify(built.data, hmac_key=public_pem,
                                  expect_config=SignatureConfiguration(require_x509=False))
    assert result.signed_xml is not None


def test_verified_is_a_frozen_value(world: World, verifier: Verifier) -> None:
    result = verifier.verify(signed(world), G22, world.registered)
    assert replace(result, sender_code=H41).sender_code == H41
