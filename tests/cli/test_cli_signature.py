"""``vdx ca …``, ``vdx envelope sign/verify`` and ``check --trust``, through CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from vdx_cli.cli import main

from tests.support import TESTS
from tests.support.sigkit import G22, H41, package
from vdx.xmldsig import pki


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str | Path):
        # catch_exceptions=False: a traceback fails the test instead of hiding in output
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    """A CA made through the CLI, with G22 (RSA) and H41 (ECDSA) agencies."""
    runner = CliRunner()
    ca = tmp_path_factory.mktemp("cli") / "ca"
    for args in (["ca", "init", "--dir", ca, "--ec"],
                 ["ca", "issue", G22, "--name", "Văn phòng Chính phủ", "--dir", ca],
                 ["ca", "issue", H41, "--name", "UBND tỉnh Nghệ An", "--dir", ca, "--ec",
                  "--days", "30"],
                 ["ca", "issue-hub", "--dir", ca]):
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return ca


def _sign(run, pki_dir: Path, tmp_path: Path, code: str = G22, **kw) -> Path:
    source, out = tmp_path / f"{code}.edxml", tmp_path / f"{code}.signed.edxml"
    source.write_bytes(package(code, **kw))
    ca = pki.CaDir(pki_dir)
    result = run("envelope", "sign", source, "--key", ca.agency_key(code), "--cert",
                 ca.agency_cert(code), "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_ca_commands_write_the_documented_layout(pki_dir: Path) -> None:
    ca = pki.CaDir(pki_dir)
    for path in (ca.root_cert, ca.root_key, ca.crl_file, ca.revoked_file, ca.hub_cert,
                 ca.hub_key, ca.agency_cert(G22), ca.agency_key(G22), ca.agency_cert(H41)):
        assert path.is_file(), path
    for key in (ca.root_key, ca.hub_key, ca.agency_key(G22), ca.agency_key(H41)):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pki.agency_code_of(pki.load_certificate(ca.agency_cert(H41))) == H41


def test_ca_issue_prints_what_was_issued(run, pki_dir: Path) -> None:
    result = run("ca", "issue", "000.00.00.H49", "--name", "Tỉnh", "--dir", pki_dir, "--ec")
    assert result.exit_code == 0
    assert "agency code  000.00.00.H49" in result.output
    serial = next(line.split()[1] for line in result.output.splitlines()
                  if line.startswith("serial"))
    assert pki.parse_serial(serial) == pki.load_certificate(
        pki.CaDir(pki_dir).agency_cert("000.00.00.H49")).serial_number


@pytest.mark.parametrize("args,message", [
    (["ca", "init"], "already holds a root CA"),
    (["ca", "issue", G22, "--name", "again"], "refusing to overwrite"),
    (["ca", "revoke", "0x1234"], "was not issued"),
    (["ca", "revoke", "not-a-serial"], "not a serial number"),
])
def test_ca_refusals_are_one_line_and_exit_1(run, pki_dir: Path, args, message) -> None:
    result = run(*args, "--dir", pki_dir)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_ca_needs_an_initialised_directory(run, tmp_path: Path) -> None:
    result = run("ca", "issue", G22, "--name", "x", "--dir", tmp_path)
    assert result.exit_code == 1 and "not a CA directory" in result.output


def test_sign_then_verify(run, pki_dir: Path, tmp_path: Path) -> None:
    signed = _sign(run, pki_dir, tmp_path)
    result = run("envelope", "verify", signed, "--trust", pki_dir)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid") and "signed for 000.00.00.G22" in result.output
    result = run("envelope", "verify", signed, "--trust", pki_dir, "--json")
    verdict = json.loads(result.output)
    assert verdict["valid"] and verdict["sender"] == G22 and verdict["agency_code"] == G22
    assert verdict["signature_algorithm"] == "rsa-sha256" and verdict["problems"] == []


def test_verify_reports_tampering_with_its_code(run, pki_dir: Path, tmp_path: Path) -> None:
    signed = _sign(run, pki_dir, tmp_path)
    signed.write_bytes(signed.read_bytes().replace("hội nghị".encode(), "hủy bỏ".encode()))
    result = run("envelope", "verify", signed, "--trust", pki_dir, "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["problems"][0]["code"] == "signature.digest_mismatch"


def test_verify_pins_to_the_given_certificate(run, pki_dir: Path, tmp_path: Path) -> None:
    signed = _sign(run, pki_dir, tmp_path)
    ca = pki.CaDir(pki_dir)
    ok = run("envelope", "verify", signed, "--trust", pki_dir, "--cert", ca.agency_cert(G22))
    assert ok.exit_code == 0, ok.output
    wrong = run("envelope", "verify", signed, "--trust", pki_dir, "--cert", ca.agency_cert(H41))
    assert wrong.exit_code == 1 and "signature.wrong_signer" in wrong.output


def test_verify_without_cert_needs_the_sender_code_in_the_certificate(
        run, pki_dir: Path, tmp_path: Path) -> None:
    """G22's key signing a package whose header claims H41: no certificate claims H41."""
    source, out = tmp_path / "claim.edxml", tmp_path / "claim.signed.edxml"
    source.write_bytes(package(H41))
    ca = pki.CaDir(pki_dir)
    run("envelope", "sign", source, "--key", ca.agency_key(G22), "--cert",
        ca.agency_cert(G22), "--out", out)
    result = run("envelope", "verify", out, "--trust", pki_dir)
    assert result.exit_code == 1 and "signature.wrong_signer" in result.output


def test_verify_uses_a_crl_given_with_crl(run, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    assert run("ca", "init", "--dir", ca_dir, "--ec").exit_code == 0
    assert run("ca", "issue", G22, "--name", "x", "--dir", ca_dir, "--ec").exit_code == 0
    signed = _sign(run, ca_dir, tmp_path)
    # Keep the old CRL as the trust folder's; revoke, then hand the new CRL over with --crl.
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "root.pem").write_bytes(pki.CaDir(ca_dir).root_cert.read_bytes())
    (trust / "root.crl.pem").write_bytes(pki.CaDir(ca_dir).crl_file.read_bytes())
    serial = pki.serial_hex(pki.load_certificate(pki.CaDir(ca_dir).agency_cert(G22)).serial_number)
    assert run("envelope", "verify", signed, "--trust", trust).exit_code == 0
    assert run("ca", "revoke", serial, "--dir", ca_dir).exit_code == 0
    result = run("envelope", "verify", signed, "--trust", trust, "--crl",
                 pki.CaDir(ca_dir).crl_file)
    assert result.exit_code == 1 and "signature.revoked_certificate" in result.output
    assert run("envelope", "verify", signed, "--trust", ca_dir).exit_code == 1


@pytest.mark.parametrize("content,code", [
    (package(), "signature.missing"),
    (b"\x00junk<edXML/>", "envelope.junk_before_xml"),
    (b"<a>", "envelope.not_xml"),
])
def test_verify_refuses_bad_input_without_traceback(run, pki_dir: Path, tmp_path: Path,
                                                    content: bytes, code: str) -> None:
    file = tmp_path / "bad.edxml"
    file.write_bytes(content)
    result = run("envelope", "verify", file, "--trust", pki_dir)
    assert result.exit_code == 1 and code in result.output


def test_verify_with_unusable_trust_is_a_usage_error(run, pki_dir: Path, tmp_path: Path) -> None:
    signed = _sign(run, pki_dir, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("envelope", "verify", signed, "--trust", empty)
    assert result.exit_code == 2 and "no trust anchor" in result.output


def test_sign_refuses_invalid_and_signed_packages(run, pki_dir: Path, tmp_path: Path) -> None:
    ca = pki.CaDir(pki_dir)
    keys = ("--key", ca.agency_key(G22), "--cert", ca.agency_cert(G22))
    invalid = tmp_path / "invalid.edxml"
    invalid.write_bytes(b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>')
    result = run("envelope", "sign", invalid, *keys, "--out", tmp_path / "x")
    assert result.exit_code == 1 and "envelope.schema" in result.output
    signed = _sign(run, pki_dir, tmp_path)
    result = run("envelope", "sign", signed, *keys, "--out", tmp_path / "y")
    assert result.exit_code == 1 and "signature.multiple" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_sign_with_a_key_of_another_certificate_is_a_usage_error(
        run, pki_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "doc.edxml"
    source.write_bytes(package())
    ca = pki.CaDir(pki_dir)
    result = run("envelope", "sign", source, "--key", ca.agency_key(G22), "--cert",
                 ca.agency_cert(H41), "--out", tmp_path / "out")
    assert result.exit_code == 2 and "does not belong" in result.output


def test_check_with_trust_adds_the_signature_verdict(run, pki_dir: Path,
                                                     tmp_path: Path) -> None:
    signed = _sign(run, pki_dir, tmp_path)
    unsigned = tmp_path / "unsigned.edxml"
    unsigned.write_bytes(package())
    assert run("envelope", "check", unsigned).exit_code == 0  # schema alone: fine
    result = run("envelope", "check", "--trust", pki_dir, signed, unsigned, "--json")
    assert result.exit_code == 1
    verdicts = {Path(v["file"]).name: v for v in json.loads(result.output)}
    assert verdicts[signed.name]["valid"]
    assert [p["code"] for p in verdicts[unsigned.name]["problems"]] == ["signature.missing"]
    assert run("envelope", "check", "--trust", pki_dir, signed).exit_code == 0


def test_a_placeholder_is_named_by_check_trust_and_replaced_by_sign(run, pki_dir, tmp_path):
    legacy = TESTS / "corpus" / "quirks" / "placeholder_signature.xml"
    refused = run("envelope", "check", "--json", "--trust", pki_dir, legacy)
    assert refused.exit_code == 1
    (verdict,) = json.loads(refused.stdout)
    assert verdict["problems"][0]["code"] == "signature.placeholder"
    assert [w["code"] for w in verdict["warnings"]] == ["quirk.placeholder_signature"]
    ca, out = pki.CaDir(pki_dir), tmp_path / "legacy.signed.edxml"
    signed = run("envelope", "sign", legacy, "--key", ca.agency_key(G22), "--cert",
                 ca.agency_cert(G22), "--out", out)
    assert signed.exit_code == 0, signed.output
    checked = run("envelope", "check", "--json", "--trust", pki_dir, out)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)[0]["warnings"] == []
