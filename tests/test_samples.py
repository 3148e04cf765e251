"""Every real-world package of the public SDK gets an expected verdict and error codes."""

from __future__ import annotations

import pytest

import vdx
from vdx.model import StatusPackage

# file -> the codes of its problems, in order ([] means valid)
EXPECTED = {
    # the manifest's xlink:href uses a prefix that is never declared
    "edoc.edxml": ["envelope.not_xml"],
    # "1212" before the XML declaration
    "edoc_new.edxml": ["envelope.junk_before_xml"],
    # SteeringType before ToPlaces, and Signature outside the XML-DSig namespace
    "edoc_replacement.edxml": ["envelope.schema", "envelope.schema"],
    "edoc_revocation.edxml": ["envelope.schema", "envelope.schema"],
    "edoc_update.edxml": ["envelope.schema", "envelope.schema"],
    "status.edxml": [],
    "status_acceptance_03.edxml": [],
    "status_assignment_04.edxml": [],
    "status_cancellation_13.edxml": [],
    "status_change-acceptance_15.edxml": [],
    "status_change-rejection_16.edxml": [],
    "status_finish_06.edxml": [],
    "status_inbox_01.edxml": [],
    "status_processing_05.edxml": [],
    "status_rejection_02.edxml": [],
}


def test_every_sample_has_an_expectation(samples_dir):
    assert sorted(p.name for p in samples_dir.glob("*.edxml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(samples_dir, name):
    verdict = vdx.check((samples_dir / name).read_bytes())
    assert [p.code for p in verdict.problems] == EXPECTED[name]
    assert verdict.valid == (not EXPECTED[name])
    for problem in verdict.problems:
        assert problem.message and problem.line


def test_schema_errors_name_the_element_and_expectation(samples_dir):
    verdict = vdx.check((samples_dir / "edoc_update.edxml").read_bytes())
    first, second = verdict.problems
    assert first.path.endswith("/MessageHeader/ToPlaces") and "after SteeringType" in first.message
    assert second.path.endswith("/edXMLHeader/Signature") and "ds:Signature" in second.message


def test_status_samples_parse_into_values(samples_dir):
    package = vdx.parse((samples_dir / "status_finish_06.edxml").read_bytes())
    assert isinstance(package, StatusPackage)
    assert package.status_code == "06"
    assert package.sender.organ_id == "000.00.00.H41"
    assert package.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert package.staff.mobile == "84912000001"
    assert package.timestamp.utcoffset().total_seconds() == 7 * 3600
