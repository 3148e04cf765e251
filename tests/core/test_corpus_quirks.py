"""The live-traffic corpus: each package gets a structural verdict of valid, with each
tolerated quirk named as a warning; the values read back build the regulation's form."""

from __future__ import annotations

from collections import Counter

import pytest
from lxml import etree

import vdx
from tests.support import TESTS
from vdx.core import quirks
from vdx.core.model import DocumentPackage
from vdx.errors import CATALOGUE

CORPUS = TESTS / "corpus" / "quirks"
# Quirks that live in the values themselves, so a package built from them keeps them;
# the others are about the form and vdx.build never writes them.
IN_THE_VALUES = {"quirk.nonstandard_identifier", "quirk.sender_is_recipient",
                 "quirk.sender_unnamed", "quirk.trace_without_organ_id"}


def _cases() -> list[tuple[str, str, tuple[str, ...]]]:
    lines = (CORPUS / "expected.txt").read_text().splitlines()
    return [(name, verdict, tuple(codes)) for name, verdict, *codes in
            (line.split() for line in lines if line and not line.startswith("#"))]


def test_every_quirk_file_has_an_expectation():
    listed = {name for name, _, _ in _cases()}
    assert listed == {p.name for p in CORPUS.iterdir() if p.name != "expected.txt"}


def test_every_quirk_code_has_a_package():
    named = {code for _, _, codes in _cases() for code in codes}
    assert named == {code for code in CATALOGUE if code.startswith("quirk.")}


@pytest.mark.parametrize(("name", "verdict", "warnings"), _cases(), ids=lambda v: str(v))
def test_quirk_case(name, verdict, warnings):
    data = (CORPUS / name).read_bytes()
    checked = vdx.check(data)
    assert verdict == "valid"
    assert checked.valid and checked.problems == (), checked.problems
    assert Counter(w.code for w in checked.warnings) == Counter(warnings)
    for warning in checked.warnings:
        assert warning.code in CATALOGUE and warning.message and warning.line and warning.path
    package = vdx.parse(data)
    assert package == checked.package
    rebuilt = vdx.build(package)
    assert vdx.parse(rebuilt) == package
    left = {w.code for w in vdx.check(rebuilt).warnings}
    assert left <= IN_THE_VALUES and left <= set(warnings)


def test_to_places_last_is_read_like_the_regulations_order():
    data = (CORPUS / "to_places_last.xml").read_bytes()
    package = vdx.parse(data)
    assert package.to_places == ("Các bộ, cơ quan ngang bộ", "UBND các tỉnh")
    assert package.steering_type == 1 and package.response_for[0].code == "5/UBND-VX"
    built = etree.fromstring(vdx.build(package))
    names = [etree.QName(e).localname for e in quirks.message_header(built)]
    assert names.index("ToPlaces") == names.index("DueDate") + 1  # written canonically
    (warning,) = vdx.check(data).warnings
    assert warning.path.endswith("/MessageHeader/ToPlaces")
    assert "after OtherInfo" in warning.message


def test_empty_response_for_is_read_as_absent():
    package = vdx.parse((CORPUS / "empty_response_for.xml").read_bytes())
    assert isinstance(package, DocumentPackage) and package.response_for == ()


def test_trace_headers_without_an_agency():
    assert vdx.parse((CORPUS / "trace_without_organ_id.xml").read_bytes()).trace[0].organ_id \
        is None
    assert vdx.parse((CORPUS / "trace_organ_id_null.xml").read_bytes()).trace[0].organ_id \
        == "null"  # kept as sent: it is what the trace says


def test_the_attachments_own_type_is_kept():
    data = (CORPUS / "manifest_type_differs.xml").read_bytes()
    (attachment,) = vdx.parse(data).attachments
    assert attachment.content_type == "application/zip"
    assert attachment.data.startswith(b"PK")
    (warning,) = vdx.check(data).warnings
    assert "'application/pdf'" in warning.message and "'application/zip'" in warning.message


def test_identifier_warnings_name_each_place():
    warnings = vdx.check((CORPUS / "older_identifiers.xml").read_bytes()).warnings
    paths = sorted(w.path.split("/MessageHeader/")[-1].split("/edXMLHeader/")[-1]
                   for w in warnings)
    assert paths == ["To[1]/OrganId", "To[2]/OrganId",
                     "TraceHeaderList/TraceHeader/OrganId"]
    assert any("'001.00.20.TT2' is in neither form" in w.message for w in warnings)


def test_a_code_that_cannot_name_a_node_is_still_refused():
    data = (CORPUS / "gateway_identifier.xml").read_bytes().replace(
        b"vxp.saas.03", b"vxp saas/03")
    verdict = vdx.check(data)
    assert [p.code for p in verdict.problems] == ["envelope.bad_identifier"]
    assert verdict.problems[0].path.endswith("/From/OrganId")
    assert "contains ' /'" in verdict.problems[0].message


def test_a_status_with_an_empty_response_for_is_refused():
    data = (CORPUS / "status_as_edxml102_writes_it.xml").read_bytes()
    root = etree.fromstring(data)
    response = root.find(".//{*}ResponseFor")
    for child in list(response):
        response.remove(child)
    verdict = vdx.check(etree.tostring(root))
    assert [p.code for p in verdict.problems] == ["envelope.inconsistent"]
    assert "ResponseFor" in verdict.problems[0].message
