"""Step 5 against signxml: the hub's own XML-DSig check must agree with signxml's.

:mod:`vdx.xmldsig.verify` checks the signature value and the digest itself (no canonical copy of
the document, attachments hashed from their text). signxml 5.2, which did it before, is
the reference: :class:`SignxmlVerifier` is the previous ``check_xml_signature``. For every
package here both accept, or both refuse with the same code, and what ours returns as the
signed content canonicalises to exactly the bytes signxml hashed (and returned).

Packages: the hostile table of ``tests/xmldsig/test_verify.py.py``, the cases below (shapes a
hand-written verifier gets wrong: comments inside ``DigestValue``, text after the
signature, nodes outside the root, inclusive C14N with extra namespaces, prefix lists,
key values, odd attachments), hypothesis-made documents, and the shared SDK samples.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import SignatureConfiguration, XMLSigner, XMLVerifier
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidSignature, SignXMLException

from tests.support.sigkit import (
    C14N,
    DS,
    EXC_C14N,
    G22,
    H41,
    H49,
    E,
    World,
    package,
    to_bytes,
    tree_of,
)
from tests.xmldsig.test_verify import CASES
from vdx.errors import SignatureError, VdxError
from vdx.xmldsig import digest as xmldsig_digest
from vdx.xmldsig import enveloped
from vdx.xmldsig import verify as vdx_verify
from vdx.xmldsig.sign import DS_SIGNATURE, xml_parser
from vdx.xmldsig.verify import VerificationPolicy, Verified, Verifier

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures

DSIG11 = "http://www.w3.org/2009/xmldsig11#"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"


# --------------------------------------------------------------- the reference --

class _XMLVerifier(XMLVerifier):
    def get_root(self, data):  # noqa: ANN001, ANN201 - signxml's signature
        if isinstance(data, etree._Element):
            return data
        return super().get_root(data)


class SignxmlVerifier(Verifier):
    """``Verifier`` whose step 5 is signxml's, the reference the hub's own check is held to;
    ``results`` keeps signxml's ``VerifyResult`` of each success."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        policy = self.policy
        self._config = SignatureConfiguration(
            require_x509=True,
            location=f"./{E}edXMLEnvelope/{E}edXMLHeader/",
            expect_references=1,
            signature_methods=frozenset(
                enveloped.SIGNATURE_ALGORITHMS[n] for n in policy.signature_algorithms),
            digest_algorithms=frozenset(
                enveloped.DIGEST_ALGORITHMS[n] for n in policy.digest_algorithms),
            default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        self._legacy_config = replace(
            self._config,
            signature_methods=self._config.signature_methods
            | {SignatureMethod.RSA_SHA1, SignatureMethod.ECDSA_SHA1},
            digest_algorithms=self._config.digest_algorithms | {DigestAlgorithm.SHA1},
        )
        self.results: list = []

    def check_xml_signature(self, tree, cert, info, sender_code, *,  # noqa: ANN001
                            consume: bool = False) -> Verified:
        legacy = bool({info.signature_algorithm, info.digest_algorithm}
                      & vdx_verify.SHA1_ALGORITHMS)
        config = replace(self._legacy_config if legacy else self._config,
                         verification_time=self.policy.clock())
        try:
            result = _XMLVerifier().verify(tree.getroot(), x509_cert=cert, expect_config=config,
                                           parser=xml_parser(), validate_schema=False)
        except InvalidDigest as exc:
            raise SignatureError("signature.digest_mismatch", str(exc)) from exc
        except InvalidCertificate as exc:
            raise SignatureError("signature.expired_certificate", str(exc)) from exc
        except (InvalidSignature, SignXMLException, etree.LxmlError, ValueError,
                TypeError) as exc:
            raise SignatureError("signature.invalid", str(exc) or type(exc).__name__) from exc
        if result.signed_xml is None:
            raise SignatureError("signature.invalid", "the signed content is not XML")
        self.results.append(result)
        return Verified(result.signed_xml.getroottree(), cert, sender_code,
                        info.signature_algorithm, info.digest_algorithm, info.c14n_algorithm,
                        legacy)


@dataclass(frozen=True)
class Outcome:
    code: str                      # "ok", a catalogue code, or "crash:<exception>"
    canonical: bytes | None = None  # the signed content, as C14N of the reference's kind
    exclusive: bytes | None = None  # the signed content, exclusive C14N


def _outcome(run: Callable[[], Verified], reference: SignxmlVerifier | None = None) -> Outcome:
    try:
        result = run()
    except VdxError as exc:
        return Outcome(exc.code)
    except Exception as exc:  # noqa: BLE001 - a crash is an outcome to compare
        return Outcome(f"crash:{type(exc).__name__}")
    root = result.signed_tree.getroot()
    exclusive = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
    canonical = None
    if reference is not None:
        canonical = reference.results[-1].signed_data
    return Outcome("ok", canonical, exclusive)


def _c14n_kind(data: bytes) -> tuple[bool, list[str] | None]:
    """How the package's Reference canonicalises (to canonicalise our result alike)."""
    root = etree.fromstring(data, xml_parser())
    transforms = root.findall(f".//{{{DS}}}Reference/{{{DS}}}Transforms/{{{DS}}}Transform")
    if len(transforms) < 2:
        return False, None
    return enveloped._c14n_options(transforms[1])


def compare(world: World, data: bytes, sender: str, registered, *,  # noqa: ANN001
            policy: VerificationPolicy | None = None, tree_only: bool = False) -> Outcome:
    """Run both verifiers on ``data`` (as a tree, copied and consumed, and as bytes) and
    assert they agree; return the outcome."""
    policy = policy or VerificationPolicy()
    ours, theirs = Verifier(world.trust, policy), SignxmlVerifier(world.trust, policy)
    reference = _outcome(lambda: theirs.verify(tree_of(data), sender, registered), theirs)
    runs = {
        "tree": lambda: ours.verify(tree_of(data), sender, registered),
        "consumed tree": lambda: ours.verify(tree_of(data), sender, registered, consume=True),
    }
    if not tree_only:
        runs["bytes"] = lambda: ours.verify(data, sender, registered)
    for name, run in runs.items():
        mine = _outcome(run)
        if name == "bytes":  # the schema may speak first: ask signxml about the same bytes
            expected = _outcome(lambda: theirs.verify(data, sender, registered), theirs)
        else:
            expected = reference
        assert mine.code == expected.code, (name, mine.code, expected.code)
        if mine.code == "ok":
            assert mine.exclusive == _exclusive_of(expected), name
            exclusive, prefixes = _c14n_kind(data)
            signed = run().signed_tree.getroot()
            assert etree.tostring(signed, method="c14n", exclusive=exclusive,
                                  with_comments=False, inclusive_ns_prefixes=prefixes) \
                == expected.canonical, name
    return reference


def _exclusive_of(outcome: Outcome) -> bytes:
    return etree.tostring(etree.fromstring(outcome.canonical, xml_parser()), method="c14n",
                          exclusive=True, with_comments=False)


# ------------------------------------------------------------------ signing tools --

class _AnySigner(XMLSigner):
    def check_deprecated_methods(self) -> None:
        pass  # SHA-1 too: a legacy sender's signatures are tested here


def sign(world: World, data: bytes, code: str = G22, *, c14n: str = EXC_C14N,
         signature: SignatureMethod | None = None,
         digest: DigestAlgorithm = DigestAlgorithm.SHA256,
         prefixes: list[str] | None = None, edit: Callable | None = None) -> bytes:
    """``data`` signed by agency ``code`` with any algorithms signxml offers; ``edit(root)``
    changes the document before it is signed."""
    agency = world.agencies[code]
    root = etree.fromstring(data, xml_parser())
    if edit is not None:
        edit(root)
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    anchor = header.find(f"{E}TraceHeaderList")
    if anchor is None:
        anchor = header.find(f"{E}MessageHeader")
    anchor.addnext(etree.Element(DS_SIGNATURE, {"Id": "placeholder"}, nsmap={"ds": DS}))
    if signature is None:
        signature = SignatureMethod.ECDSA_SHA256 if code == H49 else SignatureMethod.RSA_SHA256
    signer = _AnySigner(method=SignatureConstructionMethod.enveloped,
                        signature_algorithm=signature, digest_algorithm=digest,
                        c14n_algorithm=CanonicalizationMethod(c14n))
    signer._parser = xml_parser()
    signed = signer.sign(root, key=agency.key, cert=[agency.cert],
                         inclusive_ns_prefixes=prefixes)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def edit_signed(data: bytes, edit: Callable[[etree._Element], object]) -> bytes:
    tree = tree_of(data)
    edit(tree.getroot())
    return to_bytes(tree)


def signature_of(root: etree._Element) -> etree._Element:
    return next(root.iter(DS_SIGNATURE))


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _key_info(root: etree._Element) -> etree._Element:
    return signature_of(root).find(_ds("KeyInfo"))


def _b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def _rsa_key_value(cert: x509.Certificate) -> etree._Element:
    numbers = cert.public_key().public_numbers()
    value = etree.Element(_ds("KeyValue"))
    rsa_value = etree.SubElement(value, _ds("RSAKeyValue"))
    etree.SubElement(rsa_value, _ds("Modulus")).text = _b64(numbers.n)
    etree.SubElement(rsa_value, _ds("Exponent")).text = _b64(numbers.e)
    return value


def _ec_key_value(cert: x509.Certificate) -> etree._Element:
    key = cert.public_key()
    value = etree.Element(_ds("KeyValue"))
    ec_value = etree.SubElement(value, f"{{{DSIG11}}}ECKeyValue", nsmap={"dsig11": DSIG11})
    etree.SubElement(ec_value, f"{{{DSIG11}}}NamedCurve", URI="urn:oid:1.2.840.10045.3.1.7")
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    etree.SubElement(ec_value, f"{{{DSIG11}}}PublicKey").text = base64.b64encode(point).decode()
    return value


def _der_key_value(cert: x509.Certificate) -> etree._Element:
    value = etree.Element(f"{{{DSIG11}}}DEREncodedKeyValue", nsmap={"dsig11": DSIG11})
    value.text = base64.b64encode(cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
    return value


def _attachment(root: etree._Element) -> etree._Element:
    return next(root.iter(f"{E}ContentTransferEncoded"))


# --------------------------------------------------------------- the hostile table --

@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_table_agrees_with_signxml(case, world: World) -> None:
    built = case.build(world)
    compare(world, built.data, built.sender, lambda code: built.registry.get(code, []))


# -------------------------------------------------------------------- more shapes --

@dataclass(frozen=True)
class Shape:
    name: str
    build: Callable[[World], bytes]
    code: str                     # what both must say
    sender: str = G22
    policy: VerificationPolicy | None = None
    tree_only: bool = False       # the schema refuses the bytes (checked on trees only)

    def __str__(self) -> str:
        return self.name


def _signed(world: World, **kw) -> bytes:
    return sign(world, package(), **kw)


def _after(build: Callable[[World], bytes], edit: Callable[[etree._Element], object]):
    return lambda world: edit_signed(build(world), edit)


def _comment_in_digest_value(root: etree._Element) -> None:
    value = signature_of(root).find(f"{_ds('SignedInfo')}/{_ds('Reference')}/{_ds('DigestValue')}")
    text = value.text
    value.text = text[:5]
    comment = etree.Comment("split")
    comment.tail = text[5:]
    value.append(comment)


def _tail_after_signature(text: str):
    def edit(root: etree._Element) -> None:
        signature_of(root).tail = text
    return edit


def _outside_root(root: etree._Element) -> None:
    root.addprevious(etree.ProcessingInstruction("xml-stylesheet", 'href="x.xsl"'))
    root.addprevious(etree.Comment("before"))
    root.addnext(etree.ProcessingInstruction("after", "the root"))


def _comments_everywhere(root: etree._Element) -> None:
    signature = signature_of(root)
    signature.addprevious(etree.Comment("before the signature"))
    signature.addnext(etree.Comment("after the signature"))
    root.find(f"{E}edXMLEnvelope").insert(0, etree.Comment("first"))
    subject = next(root.iter(f"{E}Subject"))
    text = subject.text
    subject.text = text[:3]
    comment = etree.Comment("in the subject")
    comment.tail = text[3:]
    subject.append(comment)
    _attachment(root).addnext(etree.Comment("after the attachment"))


def _pi_in_body(root: etree._Element) -> None:
    next(root.iter(f"{E}Subject")).addnext(etree.ProcessingInstruction("vdx", "signed pi"))


def _declare(start_tag: bytes, declarations: bytes) -> Callable[[bytes], bytes]:
    """Add namespace declarations to the first ``start_tag`` (lxml cannot add one to an
    element it has, and would tidy away those it finds redundant)."""
    def edit(data: bytes) -> bytes:
        assert start_tag.endswith(b">") and start_tag in data
        return data.replace(start_tag, start_tag[:-1] + b" " + declarations + b">", 1)
    return edit


_ROOT_TAG = b'<edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
_root_namespaces = _declare(_ROOT_TAG, f'xmlns:x="urn:x" xmlns:dsig="{DS}"'.encode())
_root_default_namespace = _declare(_ROOT_TAG, b'xmlns="urn:default"')
_attachment_own_namespace = _declare(b"<edXML:ContentTransferEncoded>", b'xmlns:z="urn:z"')
_attachment_undeclares_default = _declare(b"<edXML:ContentTransferEncoded>", b'xmlns=""')
_attachment_prefix_rebound = _declare(
    b"<edXML:Attachment>", b'xmlns:e2="http://www.mic.gov.vn/TBT/QCVN_102_2016"')


def _odd_attachment(text: str):
    def edit(root: etree._Element) -> None:
        _attachment(root).text = text
    return edit


def _second_attachment_text(root: etree._Element) -> None:
    attachment = _attachment(root).getparent()
    twin = copy.deepcopy(attachment)
    twin.find(f"{E}ContentTransferEncoded").text = "c2Vjb25k"
    attachment.addnext(twin)


def _set_signature_method(uri: str):
    def edit(root: etree._Element) -> None:
        signature_of(root).find(f"{_ds('SignedInfo')}/{_ds('SignatureMethod')}").set(
            "Algorithm", uri)
    return edit


def _key_values(*make: Callable[[World], etree._Element]):
    """Signed by G22 (H49 for EC key values), then KeyInfo given these key values first."""
    def build(world: World) -> bytes:
        code = H49 if any(m in (_ec, _ec_other, _ec_der) for m in make) else G22
        data = sign(world, package(code), code)

        def edit(root: etree._Element) -> None:
            for m in reversed(make):
                _key_info(root).insert(0, m(world))
        return edit_signed(data, edit)
    return build


def _rsa(world: World) -> etree._Element:
    return _rsa_key_value(world.agencies[G22].cert)


def _rsa_other(world: World) -> etree._Element:
    return _rsa_key_value(world.agencies[H41].cert)


def _ec(world: World) -> etree._Element:
    return _ec_key_value(world.agencies[H49].cert)


def _ec_other(world: World) -> etree._Element:
    return _rsa_key_value(world.agencies[G22].cert)  # an RSA value beside an EC certificate


def _der(world: World) -> etree._Element:
    return _der_key_value(world.agencies[G22].cert)


def _ec_der(world: World) -> etree._Element:
    return _der_key_value(world.agencies[H49].cert)


def _der_other(world: World) -> etree._Element:
    return _der_key_value(world.agencies[H41].cert)


EDXML_NS = E[1:-1]
LEGACY = VerificationPolicy(legacy_sha1_senders=frozenset({G22}))
WITH_C14N11 = VerificationPolicy(c14n_algorithms=frozenset({"c14n", "exc-c14n", "c14n11"}))

def _bytes(edit: Callable[[bytes], bytes], **kw) -> Callable[[World], bytes]:
    """A package edited as bytes, then signed."""
    return lambda world: sign(world, edit(package()), **kw)


def _then(build: Callable[[World], bytes], edit: Callable[[bytes], bytes]):
    """Signed, then edited as bytes."""
    return lambda world: edit(build(world))


SHAPES = [
    # -- algorithms signxml offers, allowed or not ----------------------------------
    Shape("inclusive_c14n", lambda w: _signed(w, c14n=C14N), "ok"),
    Shape("rsa_sha512_sha384", lambda w: _signed(
        w, signature=SignatureMethod.RSA_SHA512, digest=DigestAlgorithm.SHA384), "ok"),
    Shape("rsa_sha384_sha512", lambda w: _signed(
        w, signature=SignatureMethod.RSA_SHA384, digest=DigestAlgorithm.SHA512), "ok"),
    Shape("ecdsa_sha384", lambda w: sign(w, package(H49), H49,
                                         signature=SignatureMethod.ECDSA_SHA384), "ok", H49),
    Shape("ecdsa_sha512_refused_by_policy", lambda w: sign(
        w, package(H49), H49, signature=SignatureMethod.ECDSA_SHA512),
        "signature.weak_algorithm", H49),
    Shape("legacy_sha1", lambda w: _signed(
        w, signature=SignatureMethod.RSA_SHA1, digest=DigestAlgorithm.SHA1), "ok",
        policy=LEGACY),
    Shape("c14n11_when_allowed", lambda w: _signed(w, c14n=C14N11), "ok", policy=WITH_C14N11),
    Shape("exclusive_prefix_list", lambda w: _signed(w, prefixes=["edXML", "ds"]), "ok"),
    Shape("inclusive_with_prefix_list", lambda w: _signed(w, c14n=C14N, prefixes=["edXML"]),
          "ok"),
    Shape("rsa_method_on_an_ecdsa_signature", _after(
        lambda w: sign(w, package(H49), H49),
        _set_signature_method(SignatureMethod.RSA_SHA256.value)), "signature.invalid", H49),
    # -- what a naive reader of the tree gets wrong ---------------------------------
    Shape("comment_inside_digest_value", _after(_signed, _comment_in_digest_value), "ok"),
    Shape("comments_everywhere", _after(_signed, _comments_everywhere), "ok"),
    Shape("comments_everywhere_inclusive",
          _after(lambda w: _signed(w, c14n=C14N), _comments_everywhere), "ok"),
    Shape("nodes_outside_the_root", _after(_signed, _outside_root), "ok"),
    Shape("nodes_outside_the_root_inclusive",
          _after(lambda w: _signed(w, c14n=C14N), _outside_root), "ok"),
    Shape("signed_processing_instruction", lambda w: _signed(w, edit=_pi_in_body), "ok"),
    Shape("processing_instruction_added", _after(_signed, _pi_in_body),
          "signature.digest_mismatch"),
    Shape("whitespace_after_signature_changed", _after(_signed, _tail_after_signature("\n")),
          "signature.digest_mismatch"),
    Shape("text_after_signature", _after(_signed, _tail_after_signature("\n  x\n")),
          "signature.invalid", tree_only=True),
    # -- namespace declarations ------------------------------------------------------
    Shape("namespaces_added_to_root_exclusive", _then(_signed, _root_namespaces), "ok"),
    # inclusive C14N of SignedInfo takes in the root's declarations: the value breaks first
    Shape("namespaces_added_to_root_inclusive", _then(
        lambda w: _signed(w, c14n=C14N), _root_namespaces), "signature.invalid"),
    Shape("root_declares_ds_under_another_prefix", _bytes(_root_namespaces, c14n=C14N), "ok"),
    Shape("root_declares_a_default_namespace", _bytes(_root_default_namespace, c14n=C14N),
          "ok"),
    # -- attachments (their text is hashed outside libxml2) ---------------------------
    Shape("attachment_with_markup_characters", lambda w: _signed(
        w, edit=_odd_attachment("a&b<c>d\re\r\nf é ü 𝄞 ]]> \t")), "ok", tree_only=True),
    Shape("attachment_changed", _after(_signed, _odd_attachment("QUJD")),
          "signature.digest_mismatch"),
    Shape("attachment_empty", lambda w: _signed(w, edit=_odd_attachment("")), "ok",
          tree_only=True),
    Shape("attachment_with_comment", _after(_signed, lambda r: _attachment(r).append(
        etree.Comment("inside"))), "ok"),
    Shape("two_attachments", lambda w: _signed(w, edit=_second_attachment_text), "ok",
          tree_only=True),
    Shape("attachment_declares_a_namespace", _bytes(_attachment_own_namespace, c14n=C14N),
          "ok"),
    Shape("attachment_namespace_added_inclusive", _then(
        lambda w: _signed(w, c14n=C14N), _attachment_own_namespace),
        "signature.digest_mismatch"),
    Shape("attachment_namespace_added_exclusive", _then(_signed, _attachment_own_namespace),
          "ok"),
    Shape("attachment_undeclares_the_default_namespace", _bytes(
        lambda d: _attachment_undeclares_default(_root_default_namespace(d)), c14n=C14N), "ok"),
    Shape("attachment_default_undeclared_after_signing", _then(
        lambda w: sign(w, _root_default_namespace(package()), c14n=C14N),
        _attachment_undeclares_default), "signature.digest_mismatch"),
    Shape("attachment_prefix_rebound", _bytes(_attachment_prefix_rebound, c14n=C14N), "ok"),
    Shape("large_attachment", lambda w: sign(w, package(attachment=random.Random(7).randbytes(
        3 << 20))), "ok"),
    # -- key values beside the certificate ------------------------------------------
    Shape("matching_rsa_key_value", _key_values(_rsa), "ok"),
    Shape("rsa_key_value_of_other_agency", _key_values(_rsa_other), "signature.invalid"),
    Shape("matching_ec_key_value", _key_values(_ec), "ok", H49),
    Shape("rsa_key_value_beside_an_ec_certificate", _key_values(_ec_other),
          "signature.invalid", H49),
    Shape("matching_der_key_value", _key_values(_der), "ok"),
    Shape("der_key_value_of_other_agency", _key_values(_der_other), "signature.invalid"),
    Shape("matching_ec_der_key_value", _key_values(_ec_der), "ok", H49),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shape_agrees_with_signxml(shape: Shape, world: World) -> None:
    data = shape.build(world)
    outcome = compare(world, data, shape.sender, world.registered, policy=shape.policy,
                      tree_only=shape.tree_only)
    assert outcome.code == shape.code


def test_a_second_key_value_is_checked_too(world: World, verifier: Verifier) -> None:
    """Stricter than signxml, which compared only the first KeyValue with the certificate."""
    data = _key_values(_rsa, _rsa_other)(world)
    assert SignxmlVerifier(world.trust).verify(data, G22, world.registered)
    with pytest.raises(SignatureError) as err:
        verifier.verify(data, G22, world.registered)
    assert err.value.code == "signature.invalid"


# --------------------------------------------------------------------- hypothesis --

_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f")
                | st.sampled_from("\t\n\r&<>\"'"), min_size=1, max_size=40)
_EDITS = st.sampled_from(["none", "comment", "pi", "outside", "subject", "attachment",
                          "namespace", "tail"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subject=_TEXT, attachment=st.binary(max_size=2000), code=st.sampled_from([G22, H49]),
       c14n=st.sampled_from([EXC_C14N, C14N]), edits=st.lists(_EDITS, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_generated_documents_agree_with_signxml(world: World, subject: str, attachment: bytes,
                                                code: str, c14n: str, edits: list[str],
                                                seed: int) -> None:
    subject = subject.strip() or "x"
    try:
        data = sign(world, package(code, subject=subject, attachment=attachment or b"x"), code,
                    c14n=c14n)
    except VdxError:
        return  # a subject the model refuses
    rng = random.Random(seed)

    def edit(root: etree._Element) -> None:
        elements = [e for e in root.iter() if isinstance(e.tag, str)
                    and e.getparent() is not None]
        for name in edits:
            target = rng.choice(elements)
            if name == "comment":
                target.addnext(etree.Comment(rng.choice(["c", "--x", " "]).replace("--", "-")))
            elif name == "pi":
                target.addnext(etree.ProcessingInstruction("p", "d"))
            elif name == "outside":
                root.addprevious(etree.Comment("outside"))
            elif name == "subject":
                next(root.iter(f"{E}Subject")).text = subject + "!"
            elif name == "attachment":
                _attachment(root).text = base64.b64encode(attachment + b".").decode()
            elif name == "tail":
                target.tail = (target.tail or "") + " "

    if "namespace" in edits:
        data = _root_namespaces(data)
    compare(world, edit_signed(data, edit), code, world.registered, tree_only=True)


# ------------------------------------------------------------------ the SDK samples --

_ROOT_DECLARATIONS = {b"xlink": b'xmlns:xlink="http://www.w3.org/1999/xlink"',
                      b"edXML": b'xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"'}


def _sample_documents(samples_dir) -> dict[str, bytes]:  # noqa: ANN001
    """The SDK samples as unsigned packages: junk before the declaration dropped, the
    prefixes they use undeclared declared on the root, their (fake, copied) signatures
    removed."""
    documents = {}
    for path in sorted(samples_dir.glob("*.edxml")):
        data = path.read_bytes()
        data = data[data.find(b"<?xml"):] if b"<?xml" in data else data
        start = data.index(b"<edXML", data.index(b"?>") if b"?>" in data else 0)
        end = data.index(b">", start)
        for prefix, declaration in _ROOT_DECLARATIONS.items():
            if prefix + b":" in data and b"xmlns:" + prefix not in data[start:end]:
                data = data[:end] + b" " + declaration + data[end:]
                end += len(declaration) + 1
        try:
            tree = tree_of(data)
        except VdxError:
            continue
        for signature in [e for e in tree.getroot().iter() if isinstance(e.tag, str)
                          and etree.QName(e).localname == "Signature"]:
            signature.getparent().remove(signature)
        documents[path.name] = to_bytes(tree)
    return documents


@pytest.mark.parametrize("c14n", [C14N, EXC_C14N])
def test_shared_samples_agree_with_signxml(samples_dir, world: World, c14n: str) -> None:
    """The national SDK's documents (default namespaces, tabs, ``xmlns=""``, manifests with
    xlink), signed as national packages are (C14N 1.0) and with exclusive C14N, intact and
    with a changed subject."""
    documents = _sample_documents(samples_dir)
    assert len(documents) == len(list(samples_dir.glob("*.edxml")))
    for name, document in documents.items():
        data = sign(world, document, c14n=c14n)
        assert compare(world, data, G22, world.registered).code == "ok", name
        tampered = edit_signed(data, lambda r: next(r.iter(f"{E}OrganId")).set("x", "1"))
        assert compare(world, tampered, G22, world.registered, tree_only=True).code == \
            "signature.digest_mismatch", name


# ------------------------------------------------- the digest without libxml2's copies --

_ODD_DOCUMENTS = [
    f'<e:edXML xmlns:e="{EDXML_NS}"><e:A><e:ContentTransferEncoded>a&amp;&lt;&gt;&#13;z é'
    f'</e:ContentTransferEncoded>\n</e:A><e:ContentTransferEncoded/></e:edXML>',
    f'<edXML xmlns="{EDXML_NS}"><A><ContentTransferEncoded>QUJD</ContentTransferEncoded>'
    f' t &amp; </A></edXML>',
    f'<e:edXML xmlns:e="{EDXML_NS}" xmlns="urn:d"><e:A><e:ContentTransferEncoded xmlns="">'
    f'QUJD</e:ContentTransferEncoded></e:A></e:edXML>',
    f'<e:edXML xmlns:e="{EDXML_NS}" xmlns="urn:d"><e:A><e:ContentTransferEncoded>QUJD'
    f'</e:ContentTransferEncoded></e:A></e:edXML>',
    f'<e:edXML xmlns:e="{EDXML_NS}"><e:A xmlns:f="{EDXML_NS}"><f:ContentTransferEncoded>QUJD'
    f'</f:ContentTransferEncoded><e:ContentTransferEncoded>x</e:ContentTransferEncoded></e:A>'
    f'</e:edXML>',
    f'<e:edXML xmlns:e="{EDXML_NS}"><e:A><e:ContentTransferEncoded xmlns:z="urn:z">QUJD'
    f'</e:ContentTransferEncoded><e:ContentTransferEncoded a="1">x</e:ContentTransferEncoded>'
    f'<e:ContentTransferEncoded>x<!--c-->y<?p?></e:ContentTransferEncoded></e:A></e:edXML>',
    f'<?pi before?><e:edXML xmlns:e="{EDXML_NS}"><e:ContentTransferEncoded>&#xD;&#x9;'
    f'</e:ContentTransferEncoded><!--c--></e:edXML><!--after-->',
]


@pytest.mark.parametrize("document", _ODD_DOCUMENTS)
@pytest.mark.parametrize("exclusive", [True, False])
def test_spliced_digest_is_libxml2s(document: str, exclusive: bool) -> None:
    root = etree.fromstring(document.encode())
    before = etree.tostring(root.getroottree())
    plain = etree.tostring(root, method="c14n", exclusive=exclusive, with_comments=False)
    assert xmldsig_digest._c14n_digest(root, "sha256", exclusive, None) \
        == hashlib.sha256(plain).digest()
    assert etree.tostring(root.getroottree()) == before  # put back as it was


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
                    .filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20), max_size=300),
       exclusive=st.booleans())
def test_spliced_text_is_escaped_as_c14n_does(text: str, exclusive: bool) -> None:
    root = etree.fromstring(f'<e:edXML xmlns:e="{EDXML_NS}"><e:ContentTransferEncoded/>'
                            f'</e:edXML>'.encode())
    try:
        root[0].text = text
    except ValueError:
        return  # not an XML character
    plain = etree.tostring(root, method="c14n", exclusive=exclusive, with_comments=False)
    assert xmldsig_digest._c14n_digest(root, "sha256", exclusive, None) \
        == hashlib.sha256(plain).digest()


def test_the_attachment_text_bypasses_libxml2(world: World) -> None:
    root = tree_of(_signed(world)).getroot()
    splice = xmldsig_digest._Splice(root)
    try:
        [(marker, element)] = splice.swapped
        assert element.getparent() is None and element.text
        assert element.text not in etree.tostring(root).decode()
        assert marker.decode() == _attachment(root).text
    finally:
        splice.restore()
    assert _attachment(root) is element


# ------------------------------------------------------------ copy and consume --

def _tricky(world: World) -> bytes:
    """Signed, then given comments, nodes outside the root and a ds namespace under
    another prefix on the root: what lxml could tidy when nodes move."""
    return edit_signed(_root_namespaces(_signed(world)),
                       lambda r: (_outside_root(r), _comments_everywhere(r)))


def test_a_tree_is_never_changed(world: World, verifier: Verifier) -> None:
    for data in (_signed(world), _tricky(world), edit_signed(_signed(world),
                                                             _odd_attachment("QUJD"))):
        tree = tree_of(data)
        before = etree.tostring(tree)
        try:
            verifier.verify(tree, G22, world.registered)
        except SignatureError:
            pass
        assert etree.tostring(tree) == before


def test_a_consumed_tree_becomes_the_signed_content(world: World, verifier: Verifier) -> None:
    tree = tree_of(_tricky(world))
    result = verifier.verify(tree, G22, world.registered, consume=True)
    signed = result.signed_tree
    assert signed.getroot() is tree.getroot()
    assert not signed.xpath("//comment() | //ds:Signature", namespaces={"ds": DS})
    assert signed.getroot().getprevious() is None and signed.getroot().getnext() is None
    copied = verifier.verify(tree_of(_tricky(world)), G22, world.registered).signed_tree
    assert etree.tostring(signed) == etree.tostring(copied)


def test_a_consumed_tree_that_fails_is_put_back(world: World, verifier: Verifier) -> None:
    data = edit_signed(_signed(world), _odd_attachment("QUJD"))
    tree = tree_of(data)
    with pytest.raises(SignatureError) as err:
        verifier.verify(tree, G22, world.registered, consume=True)
    assert err.value.code == "signature.digest_mismatch"
    assert etree.tostring(tree) == etree.tostring(tree_of(data))
