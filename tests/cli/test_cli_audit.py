"""The auditors' commands on a real hub: receipts, timelines, the ledger, proof bundles."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker
from vdx_cli.cli import main

from tests.conftest import require_service
from tests.support.hub import running_hub
from vdx.hub import journal


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """A hub where G22 sent a document to H41, which answered 03."""
    with running_hub("sqlite", tmp_path_factory.mktemp("audit")) as hub:
        g22, h41 = hub.agency("G22"), hub.agency("H41")
        g22.send(g22.document(h41.code))
        (doc,) = h41.inbox(1)
        g22.inbox(2)
        document_id = doc.headers["x-vdx-document-id"]
        h41.send(h41.status(g22.code, document_id, "03"))
        g22.inbox(1)
        h41.inbox(2)  # accepted and delivered, for its status
        yield hub, document_id


@pytest.fixture
def cli(exchange, monkeypatch):
    hub, _ = exchange
    for key, value in hub.environment().items():
        if key.startswith("VDX_"):
            monkeypatch.setenv(key, value)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_receipts_query_json_and_csv(exchange, cli):
    hub, document_id = exchange
    result = cli("receipts", "query", "--document", document_id, "--json")
    assert result.exit_code == 0, result.output
    kinds = sorted(r["kind"] for r in json.loads(result.stdout))
    assert kinds == ["accepted", "accepted", "delivered", "delivered"]
    only = json.loads(cli("receipts", "query", "--document", document_id, "--status",
                          "delivered", "--recipient", hub.agency("H41").code, "--json").stdout)
    assert [r["recipient"] for r in only] == [hub.agency("H41").code]
    rows = list(csv.DictReader(io.StringIO(cli("receipts", "query", "--document", document_id,
                                               "--csv").stdout)))
    assert len(rows) == 4 and {"receipt_id", "kind", "addressee"} <= set(rows[0])


def test_receipts_query_refuses_bad_filters(cli):
    result = CliRunner().invoke(main, ["receipts", "query", "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO 8601" in result.output


def test_document_show_timeline(exchange, cli):
    hub, document_id = exchange
    result = cli("document", "show", document_id, "--json")
    assert result.exit_code == 0, result.output
    events = [e["event"] for e in json.loads(result.stdout)["events"]]
    assert events[0] == "submitted"
    assert {"accepted", "delivered", "status 03"} <= set(events)
    missing = CliRunner().invoke(main, ["document", "show", "no-such-document"])
    assert missing.exit_code == 1 and "no record" in missing.output


def test_audit_export_verifies_offline_with_xmlsec1(exchange, cli, tmp_path):
    hub, document_id = exchange
    out = tmp_path / "proof.zip"
    assert cli("audit", "export", document_id, "--out", str(out)).exit_code == 0
    with zipfile.ZipFile(out) as bundle:
        bundle.extractall(tmp_path / "proof")
        names = bundle.namelist()
    assert {"certs/hub.pem", "certs/sender.pem", "certs/root.pem", "manifest.json",
            "VERIFY.txt"} <= set(names)
    xmlsec1 = shutil.which("xmlsec1")
    if xmlsec1 is None:
        require_service("xmlsec1", "apt-get install xmlsec1")
    proof = tmp_path / "proof"

    def verifies(cert: str, file: str) -> bool:
        return subprocess.run([xmlsec1, "--verify", "--enabled-key-data", "x509",
                               "--pubkey-cert-pem", str(proof / "certs" / cert),
                               str(proof / file)], capture_output=True).returncode == 0

    receipts = [n for n in names if n.startswith("receipts/")]
    assert len(receipts) == 4  # the document's two, and the two of the status about it
    assert all(verifies("hub.pem", r) for r in receipts)
    assert verifies("sender.pem", "package-1-document.edxml")
    original = (proof / receipts[0]).read_bytes()
    assert b">test-hub<" in original
    (proof / "tampered.xml").write_bytes(original.replace(b">test-hub<", b">evil-hub<", 1))
    assert not verifies("hub.pem", "tampered.xml")


def test_audit_verify_reports_the_tampered_position(exchange, cli):
    hub, _ = exchange
    ok = cli("audit", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["intact"] is True
    sessions = sessionmaker(hub.engine)
    with sessions.begin() as session:
        session.execute(update(journal.LedgerRow).where(journal.LedgerRow.seq == 2)
                        .values(kind="rejected"))
    bad = cli("audit", "verify", "--json")
    report = json.loads(bad.stdout)
    assert bad.exit_code == 1 and not report["intact"]
    assert [p["seq"] for p in report["problems"]] == [2]
    human = cli("audit", "verify")
    assert "entry 2" in human.output
