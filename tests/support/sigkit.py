"""A test PKI world and a signature forger, shared by the signature tests.

Keys and certificates are generated with :mod:`vdx.xmldsig.pki` into a session temporary
directory (never committed); the fixtures are in :mod:`tests.support.sigfixtures`.
:func:`reseal` is the attacker's (or, with the right key, a careless signer's) tool: it
recomputes DigestValue and SignatureValue after a test has reshaped SignedInfo, so a
refusal can only come from the verifier's policy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from vdx.core import envelope, model
from vdx.core.xmlsafe import EDXML_NS, parse_untrusted
from vdx.xmldsig import pki
from vdx.xmldsig.sign import DS_SIGNATURE, Signer
from vdx.xmldsig.verify import TrustStore

G22, H41, H49 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"
DS = "http://www.w3.org/2000/09/xmldsig#"
E = f"{{{EDXML_NS}}}"
NS = {"ds": DS, "e": EDXML_NS}
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_HASHES = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashes.SHA1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashes.SHA384,
}


@dataclass(frozen=True)
class Agency:
    code: str
    key: pki.PrivateKey
    cert: x509.Certificate

    @property
    def signer(self) -> Signer:
        return Signer(self.key, self.cert)


@dataclass(frozen=True)
class World:
    ca_dir: Path
    root_key: pki.PrivateKey
    root_cert: x509.Certificate
    agencies: dict[str, Agency]       # registered: G22 (RSA), H41 (RSA), H49 (ECDSA)
    impostor: Agency                  # a valid G22 certificate of our root, not registered
    expired: Agency
    not_yet_valid: Agency
    revoked: Agency
    wrong_usage: Agency
    untrusted: Agency                 # G22 certificate from another root
    other_root: x509.Certificate

    @property
    def trust(self) -> TrustStore:
        return TrustStore.from_dir(self.ca_dir)

    def registered(self, code: str) -> list[x509.Certificate]:
        agency = self.agencies.get(code)
        return [agency.cert] if agency else []

    def registry(self, **extra: Agency) -> dict[str, list[x509.Certificate]]:
        """The registered mapping, with ``code=agency`` overrides."""
        mapping = {code: [a.cert] for code, a in self.agencies.items()}
        mapping.update({_CODES[name]: [a.cert] for name, a in extra.items()})
        return mapping


_CODES = {"G22": G22, "H41": H41, "H49": H49}


def build_world(base: Path) -> World:
    now = datetime.now(UTC)
    ca_dir = base / "ca"
    pki.init_ca(ca_dir)
    root_key, root_cert = pki.CaDir(ca_dir).load_root()

    def agency_from_files(code: str, **kw) -> Agency:
        issued = pki.issue_agency(ca_dir, code, f"Agency {code}", **kw)
        return Agency(code, pki.load_private_key(issued.key_path), issued.certificate)

    # The revoked G22 certificate is issued, revoked, then replaced: the admin workflow.
    revoked = agency_from_files(G22)
    pki.revoke(ca_dir, revoked.cert.serial_number)
    agencies = {G22: agency_from_files(G22, replace=True), H41: agency_from_files(H41),
                H49: agency_from_files(H49, ec_key=True)}
    pki.issue_hub(ca_dir)

    def odd(code: str, *, start: datetime, end: datetime, issuer=(root_key, root_cert),
            key_usage: x509.KeyUsage | None = pki.SIGNING_KEY_USAGE) -> Agency:
        key = pki.generate_key()
        cert = pki.issue_certificate(issuer[0], issuer[1], pki.agency_subject(code, "odd"),
                                     key.public_key(), not_before=start, not_after=end,
                                     key_usage=key_usage)
        return Agency(code, key, cert)

    year = timedelta(days=365)
    other_key, other_root = pki.create_root("Evil TEST Root CA")
    encipher_only = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    return World(
        ca_dir=ca_dir, root_key=root_key, root_cert=root_cert, agencies=agencies,
        impostor=odd(G22, start=now - timedelta(days=1), end=now + year),
        expired=odd(G22, start=now - 2 * year, end=now - timedelta(days=1)),
        not_yet_valid=odd(G22, start=now + timedelta(days=1), end=now + year),
        revoked=revoked,
        wrong_usage=odd(G22, start=now - timedelta(days=1), end=now + year,
                        key_usage=encipher_only),
        untrusted=odd(G22, start=now - timedelta(days=1), end=now + year,
                      issuer=(other_key, other_root)),
        other_root=other_root,
    )


def package(sender: str = G22, *, trace: bool = True, attachment: bytes = b"%PDF-1.7 test",
            subject: str = "Về việc tổ chức hội nghị") -> bytes:
    """An unsigned, schema-valid document package."""
    return envelope.build(model.DocumentPackage(
        sender=model.Organization(sender, organ_name="Văn phòng Chính phủ"),
        recipients=(model.Organization(H41),),
        document_id=f"{sender},2026/11/22,7816/VPCP-TTĐT",
        code=model.Code("7816", "VPCP-TTĐT"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"),
        subject=subject,
        signer=model.SignerInfo("Nguyễn Văn A", "KT. BỘ TRƯỞNG", "Thứ trưởng"),
        trace=(model.TraceHeader(sender, datetime(2026, 11, 22, 9, 30, tzinfo=model.VIETNAM_TZ)),)
        if trace else (),
        attachments=(model.Attachment("van-ban.pdf", "application/pdf", attachment,
                                      content_id="cid:1"),) if attachment else (),
    ))


# ------------------------------------------------------------------------ tree tools --

def tree_of(data: bytes) -> etree._ElementTree:
    """Hardened parse only (no schema): what the verifier's own wall must handle."""
    return parse_untrusted(data)


def to_bytes(tree: etree._ElementTree | etree._Element) -> bytes:
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def signature_of(tree: etree._ElementTree) -> etree._Element:
    return next(tree.getroot().iter(DS_SIGNATURE))


def find(tree: etree._ElementTree, path: str) -> etree._Element:
    found = tree.getroot().xpath(path, namespaces=NS)
    assert found, path
    return found[0]


def ds(name: str, **attrib: str) -> etree._Element:
    return etree.Element(f"{{{DS}}}{name}", attrib, nsmap={"ds": DS})


def reseal(tree: etree._ElementTree, key: pki.PrivateKey | bytes, *,
           digest: bool = True) -> etree._ElementTree:
    """Recompute DigestValue (enveloped + the reference's C14N, as signxml does) and
    SignatureValue (over SignedInfo's C14N) with ``key``; bytes mean an HMAC secret."""
    signature = signature_of(tree)
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    reference = signed_info.find(f"{{{DS}}}Reference")
    if digest and reference is not None:
        copy = etree.fromstring(etree.tostring(tree.getroot()))
        sig_copy = next(copy.iter(DS_SIGNATURE))
        _remove_keeping_tail(sig_copy)
        algorithms = [t.get("Algorithm") for t in reference.iterfind(f"{{{DS}}}Transforms/*")]
        exclusive = EXC_C14N in algorithms or C14N not in algorithms
        canonical = etree.tostring(copy, method="c14n", exclusive=exclusive, with_comments=False)
        method = reference.find(f"{{{DS}}}DigestMethod").get("Algorithm")
        h = hashes.Hash(_HASHES[method]())
        h.update(canonical)
        reference.find(f"{{{DS}}}DigestValue").text = base64.b64encode(h.finalize()).decode()
    c14n = signed_info.find(f"{{{DS}}}CanonicalizationMethod").get("Algorithm")
    # As signxml does: canonicalise SignedInfo inside a standalone copy of the Signature.
    standalone = etree.fromstring(etree.tostring(signature)).find(f"{{{DS}}}SignedInfo")
    canonical = etree.tostring(standalone, method="c14n",
                               exclusive=c14n.startswith(EXC_C14N), with_comments=False)
    method = signed_info.find(f"{{{DS}}}SignatureMethod").get("Algorithm")
    value = signature.find(f"{{{DS}}}SignatureValue")
    hash_cls = hashes.SHA1 if method.endswith("sha1") else hashes.SHA256
    if isinstance(key, bytes):
        raw = hmac.new(key, canonical, hashlib.sha256).digest()
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(canonical, padding.PKCS1v15(), hash_cls())
    else:
        r, s = utils.decode_dss_signature(key.sign(canonical, ec.ECDSA(hash_cls())))
        size = (key.curve.key_size + 7) // 8
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    value.text = base64.b64encode(raw).decode()
    return tree


def _remove_keeping_tail(el: etree._Element) -> None:
    parent = el.getparent()
    if el.tail:
        previous = el.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def set_key_info_cert(tree: etree._ElementTree, cert: x509.Certificate) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    element = signature_of(tree).find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    element.text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
