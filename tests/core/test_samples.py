"""Every real-world package of the public SDK gets an expected verdict, error codes and
the warnings that name what it does that the regulation does not."""

from __future__ import annotations

import pytest

import vdx
from vdx.core.model import StatusPackage

# file -> the codes of its problems, in order ([] means valid)
EXPECTED = {
    # the manifest's xlink:href uses a prefix that is never declared
    "edoc.edxml": ["envelope.not_xml"],
    # "1212" before the XML declaration
    "edoc_new.edxml": ["envelope.junk_before_xml"],
    # valid, with the live axis's quirks (WARNINGS)
    "edoc_replacement.edxml": [],
    "edoc_revocation.edxml": [],
    "edoc_update.edxml": [],
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
# ToPlaces after SteeringType, and a placeholder Signature in the edXML namespace
LIVE_AXIS = ["quirk.to_places_last", "quirk.placeholder_signature"]
WARNINGS = {"edoc_replacement.edxml": LIVE_AXIS, "edoc_revocation.edxml": LIVE_AXIS,
            "edoc_update.edxml": LIVE_AXIS}


def test_every_sample_has_an_expectation(samples_dir):
    assert sorted(p.name for p in samples_dir.glob("*.edxml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(samples_dir, name):
    verdict = vdx.check((samples_dir / name).read_bytes())
    assert [p.code for p in verdict.problems] == EXPECTED[name]
    assert verdict.valid == (not EXPECTED[name])
    assert [w.code for w in verdict.warnings] == WARNINGS.get(name, [])
    for problem in verdict.problems + verdict.warnings:
        assert problem.message and problem.line


def test_warnings_name_the_element_and_why(samples_dir):
    verdict = vdx.check((samples_dir / "edoc_update.edxml").read_bytes())
    first, second = verdict.warnings
    assert first.path.endswith("/MessageHeader/ToPlaces") and "after OtherInfo" in first.message
    assert second.path.endswith("/edXMLHeader/Signature") and "placeholder" in second.message


def test_live_axis_documents_parse_into_values(samples_dir):
    package = vdx.parse((samples_dir / "edoc_update.edxml").read_bytes())
    assert package.to_places == ("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP")
    assert package.business.doc_type == 2 and len(package.recipients) == 3
    assert vdx.parse(vdx.build(package)) == package


def test_status_samples_parse_into_values(samples_dir):
    package = vdx.parse((samples_dir / "status_finish_06.edxml").read_bytes())
    assert isinstance(package, StatusPackage)
    assert package.status_code == "06"
    assert package.sender.organ_id == "000.00.00.H41"
    assert package.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert package.staff.mobile == "84912000001"
    assert package.timestamp.utcoffset().total_seconds() == 7 * 3600
