"""The ``vdx envelope`` commands, through click's CliRunner."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from vdx_cli.cli import main

import vdx
from tests.support import TESTS

CORPUS = TESTS / "corpus" / "envelope"
G22, H41, H49 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def _new(run, tmp_path, *extra):
    out = tmp_path / "doc.edxml"
    result = run("envelope", "new", "--from", G22, "--to", H41, "--to", H49,
                 "--subject", "Về việc tổ chức hội nghị", "--code", "12/VPCP-TTĐT",
                 "--type-name", "Công văn", "--out", str(out), *extra)
    return result, out


def test_new_builds_a_valid_package_with_attachments(run, tmp_path):
    pdf = tmp_path / "giay-moi.pdf"
    pdf.write_bytes(b"%PDF-1.7 invitation")
    result, out = _new(run, tmp_path, "--attach", str(pdf), "--response-for",
                       f"{H41},2026/11/01,5/UBND-VP")
    assert result.exit_code == 0, result.output
    package = vdx.parse(out.read_bytes())
    assert [r.organ_id for r in package.recipients] == [H41, H49]
    assert package.code == vdx.core.model.Code("12", "VPCP-TTĐT")
    assert package.attachments[0].data == pdf.read_bytes()
    assert package.response_for[0].organ_id == H41


def test_new_refuses_a_code_that_cannot_name_a_node_with_a_reason(run, tmp_path):
    result = CliRunner().invoke(main, ["envelope", "new", "--from", "000/00/00/G22", "--to",
                                       H41, "--subject", "s", "--code", "1/A", "--type-name",
                                       "t", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "contains '/'" in result.output
    assert not (tmp_path / "x").exists()


def test_new_warns_of_a_code_outside_the_official_forms(tmp_path):
    result = CliRunner().invoke(main, ["envelope", "new", "--from", "28.22.H17", "--to", H41,
                                       "--subject", "s", "--code", "1/A", "--type-name", "t",
                                       "--from-name", "Sở thử nghiệm",
                                       "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "warning: quirk.nonstandard_identifier" in result.stderr
    assert "has 3 groups" in result.stderr
    assert vdx.parse((tmp_path / "x").read_bytes()).sender.organ_id == "28.22.H17"


def test_check_exit_codes_and_json(run, tmp_path):
    _, good = _new(run, tmp_path)
    assert run("envelope", "check", str(good)).exit_code == 0
    bad = CORPUS / "xxe_file.xml"
    result = run("envelope", "check", "--json", str(good), str(bad))
    assert result.exit_code == 1
    verdicts = json.loads(result.stdout)
    assert [v["valid"] for v in verdicts] == [True, False]
    assert verdicts[1]["problems"][0]["code"] == "envelope.dtd_forbidden"
    assert verdicts[0]["kind"] == "document"


def test_check_reports_line_and_path(run):
    result = run("envelope", "check", str(CORPUS / "missing_subject.xml"))
    assert result.exit_code == 1
    assert "envelope.schema" in result.output and "/MessageHeader/SignerInfo" in result.output
    assert "line " in result.output


def test_check_usage_errors_exit_2(run):
    result = CliRunner().invoke(main, ["envelope", "check", "/no/such/file.edxml"])
    assert result.exit_code == 2
    assert CliRunner().invoke(main, ["envelope", "check"]).exit_code == 2


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.xml")))
def test_check_never_tracebacks(run, name):
    result = CliRunner().invoke(main, ["envelope", "check", str(CORPUS / name)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_random_bytes_never_traceback(tmp_path):
    junk = tmp_path / "junk.edxml"
    for seed in range(20):
        junk.write_bytes(os.urandom(64 + seed * 13))
        result = CliRunner().invoke(main, ["envelope", "check", str(junk)])
        assert result.exit_code == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_status_builds_a_status_package(run, tmp_path):
    out = tmp_path / "st.edxml"
    doc_id = f"{G22},2026/11/22,12/VPCP-TTĐT"
    result = run("envelope", "status", "--from", H41, "--for", doc_id, "--code", "03",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    status = vdx.parse(out.read_bytes())
    assert status.status_code == "03" and status.description == "Đã tiếp nhận"
    assert status.response_for.organ_id == G22 and status.response_for.code == "12/VPCP-TTĐT"


def test_status_needs_the_original_sender_for_opaque_ids(tmp_path):
    result = CliRunner().invoke(main, ["envelope", "status", "--from", H41, "--for",
                                       "9fbfbad2-f1f8-4256-a2eb-50fb1061cddb", "--code", "01",
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--to" in result.output


def test_show_human_and_json(run, tmp_path):
    _, out = _new(run, tmp_path)
    human = run("envelope", "show", str(out))
    assert human.exit_code == 0 and "Về việc tổ chức hội nghị" in human.output
    data = json.loads(run("envelope", "show", "--json", str(out)).stdout)
    assert data["to"] == [H41, H49] and data["code"] == "12/VPCP-TTĐT"


def test_show_of_an_invalid_package_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["envelope", "show", str(CORPUS / "billion_laughs.xml")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: envelope.dtd_forbidden")


QUIRKS = TESTS / "corpus" / "quirks"


def test_check_names_tolerated_quirks_as_warnings_in_json(run):
    result = run("envelope", "check", "--json", str(QUIRKS / "live_traffic.xml"),
                 str(QUIRKS / "no_signature.xml"))
    assert result.exit_code == 0, result.output
    live, plain = json.loads(result.stdout)
    assert live["valid"] and live["problems"] == [] and plain["warnings"] == []
    codes = {w["code"] for w in live["warnings"]}
    assert {"quirk.to_places_last", "quirk.placeholder_signature",
            "quirk.manifest_type_differs", "quirk.nonstandard_identifier"} <= codes
    first = live["warnings"][0]
    assert set(first) == {"code", "message", "line", "path"} and first["line"]


def test_check_shows_warnings_to_people(run):
    result = run("envelope", "check", str(QUIRKS / "to_places_last.xml"))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("valid")
    assert "warning quirk.to_places_last" in lines[1] and "/MessageHeader/ToPlaces" in lines[1]
    assert "after OtherInfo" in lines[2]


def test_check_reports_every_layer_in_one_pass(run, tmp_path):
    """A schema error no longer hides the identifier and attachment problems under it."""
    data = (QUIRKS / "to_places_last.xml").read_text()
    data = data.replace("<Subject>", "<Subjet>").replace("</Subject>", "</Subjet>")
    data = data.replace(f"<To><OrganId>{H41}", "<To><OrganId>H41/../G22")
    data = data.replace("<AttachmentName>cong-van.pdf</AttachmentName>\n      <Description>",
                        "<AttachmentName>khac.pdf</AttachmentName>\n      <Description>")
    bad = tmp_path / "bad.edxml"
    bad.write_text(data)
    result = run("envelope", "check", "--json", str(bad))
    assert result.exit_code == 1
    (verdict,) = json.loads(result.stdout)
    codes = [p["code"] for p in verdict["problems"]]
    assert codes[0] == "envelope.schema"
    assert "envelope.bad_attachment" in codes and "envelope.bad_identifier" in codes
    assert [w["code"] for w in verdict["warnings"]] == ["quirk.to_places_last"]
    human = run("envelope", "check", str(bad)).output
    assert "envelope.bad_identifier" in human and "warning quirk.to_places_last" in human
