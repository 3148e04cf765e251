"""The XSDs themselves: they load in both validators, which agree on every verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from tests.conftest import shared_dir
from tests.support import TESTS
from vdx.core import schema
from vdx.core.xmlsafe import parse_untrusted
from vdx.errors import VdxError

CORPUS = TESTS / "corpus" / "envelope"


def _inputs() -> list[Path]:
    files = sorted(p for p in CORPUS.iterdir() if p.suffix == ".xml")
    shared = shared_dir()
    if shared is not None:
        files += sorted((shared / "samples" / "edxml-sdk").glob("*.edxml"))
    return files


@pytest.fixture(scope="module")
def both():
    path = str(schema.schema_path())
    xsd = xmlschema.XMLSchema10(path)  # raises on any XSD error
    xsd_libxml2 = etree.XMLSchema(etree.parse(path))
    return xsd, xsd_libxml2


def test_schemas_load_and_target_the_national_namespace(both):
    xsd, _ = both
    assert xsd.target_namespace == "http://www.mic.gov.vn/TBT/QCVN_102_2016"
    assert "edXML" in xsd.elements
    signature = "{http://www.w3.org/2000/09/xmldsig#}Signature"
    assert signature in xsd.maps.elements


@pytest.mark.parametrize("path", _inputs(), ids=lambda p: p.name)
def test_validators_agree(both, path):
    xsd, xsd_libxml2 = both
    try:
        tree = parse_untrusted(path.read_bytes())
    except VdxError:
        return  # refused before any schema sees it: nothing to compare
    assert xsd.is_valid(tree) == xsd_libxml2.validate(tree), path.name


def test_agreement_covers_valid_and_invalid_inputs(both):
    xsd, _ = both
    verdicts = set()
    for path in _inputs():
        try:
            verdicts.add(xsd.is_valid(parse_untrusted(path.read_bytes())))
        except VdxError:
            pass
    assert verdicts == {True, False}


@pytest.mark.parametrize("value, ok", [
    ("2026/11/22", True), ("2026/13/01", False), ("2026-11-22", False), ("26/11/22", False),
])
def test_date_type(value, ok):
    doc = (CORPUS / "missing_subject.xml").read_bytes().replace(
        b"<SignerInfo>", b"<Subject>s</Subject><SignerInfo>").replace(
        b"2026/11/01</PromulgationDate>", value.encode() + b"</PromulgationDate>")
    assert schema.is_valid(parse_untrusted(doc)) is ok
