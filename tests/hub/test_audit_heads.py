"""Signed ledger heads: `vdx audit head`, `verify --expect-head`, `publish-heads`.

One exchange through the real worker, journal and signatures (on the in-memory broker)
fills a SQLite ledger once; each test works on its own copy of that database, so
tampering in one test stays there.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update
from vdx_cli.cli import main

from tests.conftest import require_service
from tests.support.hub import register_offline
from tests.support.registry import TestPki, database
from vdx import store
from vdx.broker.memory import MemoryBroker
from vdx.core.ledger import make_hash_signer, make_hash_verifier
from vdx.core.ledger_head import HeadRecord, file_name
from vdx.hub import audit, journal
from vdx.hub.supervisor import load_services
from vdx.hub.worker import HubWorker, WorkerConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer


@dataclass(frozen=True)
class Exchange:
    database: Path
    pki_path: Path
    agencies: dict


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """A hub's database after G22 sent H41 two documents (H41 answered 03 to the last)
    and one unsigned package: the real worker, journal and signatures, on the
    in-memory broker."""
    tmp = tmp_path_factory.mktemp("audit-exchange")
    test_pki = TestPki.create(tmp / "pki")
    pki.issue_hub(test_pki.path, ec_key=True)
    with database("sqlite", tmp) as engine:
        agencies, config = register_offline(engine, test_pki, ("G22", "H41"),
                                                    actor="test")
        broker = MemoryBroker(bound=[a.code for a in agencies.values()])
        g22, h41 = agencies["G22"], agencies["H41"]
        document_id = f"{g22.code},2026/11/22,audit/TEST"
        broker.submit(g22.document(h41.code), user_id=g22.code)
        broker.submit(g22.document(h41.code, document_id=document_id), user_id=g22.code)
        broker.submit(b"<not-a-package/>", user_id=g22.code)
        serve(engine, load_services(config), broker)
        broker.submit(h41.status(g22.code, document_id, "03"), user_id=h41.code)
        serve(engine, load_services(config), broker)
        yield Exchange(Path(engine.url.database), test_pki.path, agencies)


def serve(engine, services, broker) -> None:
    """Run a worker until the broker is idle, then stop it (as SIGTERM does)."""
    worker = HubWorker(WorkerConfig(hub_id="test-hub", amqp_url="amqp://unused"),
                       store.session_factory(engine), services, channel=broker.connect)
    broker.on_idle = worker.request_stop
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the worker was still busy after 60 s"


class Copy:
    """A test's own copy of the exchange's database, and the CLI pointed at it."""

    def __init__(self, exchange: Exchange, tmp_path, monkeypatch) -> None:
        self.agencies = exchange.agencies
        path = tmp_path / "copy.db"
        source = sqlite3.connect(exchange.database)
        with sqlite3.connect(path) as target:
            source.backup(target)
        source.close()
        self.engine = store.make_engine(f"sqlite:///{path}")
        self.sessions = store.session_factory(self.engine)
        monkeypatch.setenv("VDX_DATABASE_URL", str(self.engine.url))
        monkeypatch.setenv("VDX_PKI_DIR", str(exchange.pki_path))
        monkeypatch.setenv("VDX_TRUST_DIR", str(exchange.pki_path))
        monkeypatch.setenv("VDX_HUB_ID", "test-hub")
        self.runner = CliRunner()
        ca = pki.CaDir(exchange.pki_path)
        self.signer = Signer.from_files(ca.hub_key, ca.hub_cert)
        self.hub_pem = ca.hub_cert

    def cli(self, *args: str):
        return self.runner.invoke(main, list(args), catch_exceptions=False)

    def verify(self, *args: str) -> tuple[int, dict]:
        result = self.cli("audit", "verify", "--json", *args)
        return result.exit_code, json.loads(result.stdout)

    def last_seq(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.max(journal.LedgerRow.seq)))

    def cut_tail(self, n: int) -> None:
        """The attack: delete the newest ``n`` entries, their receipts and outbox rows,
        and move the recorded head back, as someone with write access to the database."""
        with self.sessions.begin() as session:
            last = session.scalar(select(func.max(journal.LedgerRow.seq)))
            gone = session.scalars(select(journal.LedgerRow.receipt_id)
                                   .where(journal.LedgerRow.seq > last - n)).all()
            session.execute(delete(journal.OutboxRow)
                            .where(journal.OutboxRow.receipt_id.in_(gone)))
            session.execute(delete(journal.ReceiptRow).where(journal.ReceiptRow.id.in_(gone)))
            session.execute(delete(journal.LedgerRow).where(journal.LedgerRow.seq > last - n))
            kept = session.get(journal.LedgerRow, last - n)
            session.execute(update(journal.LedgerHeadRow).values(
                seq=kept.seq, entry_hash=kept.entry_hash))

    def append(self, n: int) -> None:
        """What the hub does when it records more receipts (ledger side only)."""
        with self.sessions.begin() as session:
            head = journal.lock_ledger_head(session)
            journal.append_ledger(session, head, [
                {"kind": "status", "sender": "000.00.00.G22", "created_at": datetime.now(UTC)}
                for _ in range(n)], make_hash_signer(self.signer.key))


@pytest.fixture
def db(exchange, tmp_path, monkeypatch):
    copy = Copy(exchange, tmp_path, monkeypatch)
    yield copy
    copy.engine.dispose()


# ----------------------------------------------------------------- vdx audit head

def test_head_is_signed_by_the_hub_and_names_the_last_entry(db, tmp_path):
    out = tmp_path / "head.xml"
    result = db.cli("audit", "head", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    record = audit.read_head(out.read_bytes(), db.signer.certificate)
    with db.sessions() as session:
        last = session.get(journal.LedgerRow, db.last_seq())
    assert (record.head.seq, record.head.entry_hash) == (last.seq, last.entry_hash)
    assert record.hub_id == "test-hub"
    assert json.loads(result.stdout)["seq"] == last.seq


def test_head_verifies_offline_with_xmlsec1_and_an_edit_does_not(db, tmp_path):
    xmlsec1 = shutil.which("xmlsec1")
    if xmlsec1 is None:
        require_service("xmlsec1", "apt-get install xmlsec1")
    out = tmp_path / "head.xml"
    assert db.cli("audit", "head", "--out", str(out)).exit_code == 0

    def verifies(path) -> bool:
        return subprocess.run([xmlsec1, "--verify", "--enabled-key-data", "x509",
                               "--pubkey-cert-pem", str(db.hub_pem), str(path)],
                              capture_output=True).returncode == 0

    assert verifies(out)
    seq = db.last_seq()
    edited = tmp_path / "edited.xml"
    edited.write_bytes(out.read_bytes().replace(f"<Seq>{seq}</Seq>".encode(),
                                                f"<Seq>{seq + 5}</Seq>".encode()))
    assert edited.read_bytes() != out.read_bytes()
    assert not verifies(edited)
    with pytest.raises(audit.HeadError, match="not signed by the hub"):
        audit.read_head(edited.read_bytes(), db.signer.certificate)


def test_head_of_an_empty_ledger_is_refused(db, tmp_path):
    with db.sessions.begin() as session:
        for model in (journal.OutboxRow, journal.ReceiptRow, journal.LedgerRow,
                      journal.LedgerHeadRow):
            session.execute(delete(model))
    result = db.cli("audit", "head", "--out", str(tmp_path / "head.xml"))
    assert result.exit_code == 1 and "the ledger is empty" in result.output
    assert not (tmp_path / "head.xml").exists()


def test_head_is_refused_when_the_recorded_head_is_not_the_hubs(db, tmp_path):
    with db.sessions.begin() as session:
        session.execute(update(journal.LedgerRow).where(journal.LedgerRow.seq == db.last_seq())
                        .values(kind="rejected"))
    result = db.cli("audit", "head", "--out", str(tmp_path / "head.xml"))
    assert result.exit_code == 1 and "not signed by the hub" in result.output


# ---------------------------------------------------------- verify --expect-head

def test_the_tail_cut_is_seen_only_against_a_kept_head(db, tmp_path):
    head = tmp_path / "head.xml"
    assert db.cli("audit", "head", "--out", str(head)).exit_code == 0
    last = db.last_seq()
    code, report = db.verify("--expect-head", str(head))
    assert code == 0 and report["intact"] and report["expected_heads"][0]["seq"] == last
    db.cut_tail(2)
    code, plain = db.verify()
    assert code == 0 and plain["intact"] and plain["entries"] == last - 2
    code, anchored = db.verify("--expect-head", str(head))
    assert code == 1 and not anchored["intact"]
    assert [(p["code"], p["seq"]) for p in anchored["problems"]] == \
        [("ledger.truncated", last - 1)]
    assert f"entries {last - 1}–{last} were deleted" in anchored["problems"][0]["message"]
    human = db.cli("audit", "verify", "--expect-head", str(head))
    assert human.exit_code == 1 and f"entry {last - 1}: ledger.truncated" in human.output


def test_a_head_entry_rewritten_by_the_hubs_key_is_seen(db, tmp_path):
    head = tmp_path / "head.xml"
    assert db.cli("audit", "head", "--out", str(head)).exit_code == 0
    last = db.last_seq()
    db.cut_tail(1)
    db.append(1)  # genuine, signed, chained: a restored backup that went on
    assert db.verify()[0] == 0
    code, report = db.verify("--expect-head", str(head))
    assert code == 1
    truncated = [p for p in report["problems"] if p["code"] == "ledger.truncated"]
    assert [p["seq"] for p in truncated] == [last]
    assert "is not the recorded head" in truncated[0]["message"]


def test_entries_after_the_kept_head_are_fine(db, tmp_path):
    head = tmp_path / "head.xml"
    assert db.cli("audit", "head", "--out", str(head)).exit_code == 0
    db.append(2)
    code, report = db.verify("--expect-head", str(head))
    assert code == 0 and report["intact"] and report["entries"] > report["expected_heads"][0]["seq"]


def test_a_forged_head_file_is_refused_not_trusted(db, tmp_path):
    head = tmp_path / "head.xml"
    assert db.cli("audit", "head", "--out", str(head)).exit_code == 0
    forged = tmp_path / "forged.xml"
    forged.write_bytes(head.read_bytes().replace(b"<HubId>test-hub<", b"<HubId>evil-hub<"))
    result = db.cli("audit", "verify", "--expect-head", str(forged))
    assert result.exit_code == 2 and "not signed by the hub" in result.output
    (tmp_path / "junk.xml").write_bytes(b"<LedgerHead/>")
    result = db.cli("audit", "verify", "--expect-head", str(tmp_path / "junk.xml"))
    assert result.exit_code == 2 and "ledger head" in result.output


# ----------------------------------------------------------- vdx audit publish-heads

def test_publish_once_writes_only_when_the_head_moved(db, tmp_path):
    heads = tmp_path / "heads"
    first = db.cli("audit", "publish-heads", "--dir", str(heads), "--once")
    assert first.exit_code == 0, first.output
    last = db.last_seq()
    assert sorted(p.name for p in heads.iterdir()) == [file_name(last)]
    again = db.cli("audit", "publish-heads", "--dir", str(heads), "--once")
    assert again.exit_code == 0 and "has not moved" in again.output
    assert len(list(heads.iterdir())) == 1
    db.append(3)
    assert db.cli("audit", "publish-heads", "--dir", str(heads), "--once").exit_code == 0
    assert sorted(p.name for p in heads.iterdir()) == [file_name(last), file_name(last + 3)]
    records = audit.read_heads(heads, db.signer.certificate)
    assert [r.head.seq for r in records] == [last, last + 3]


def test_publish_loop_runs_until_told_to_stop(db, tmp_path):
    heads, reported, rounds = tmp_path / "heads", [], []

    def wait(seconds: float) -> bool:  # stands for a stop event's wait: no real time passes
        rounds.append(seconds)
        if len(rounds) == 2:
            db.append(1)
        return len(rounds) == 3

    audit.publish_heads(db.sessions, db.signer, make_hash_verifier(db.signer.certificate),
                        heads, hub_id="test-hub", every=30, wait=wait, report=reported.append)
    assert rounds == [30, 30, 30]
    assert [p.written for p in reported] == [True, False, True]
    assert [p.record.head.seq for p in reported] == [reported[0].record.head.seq] * 2 + \
        [reported[0].record.head.seq + 1]
    assert len(list(heads.glob("ledger-head-*.xml"))) == 2


def test_a_published_head_the_ledger_no_longer_matches_stops_the_publisher(db, tmp_path):
    heads = tmp_path / "heads"
    assert db.cli("audit", "publish-heads", "--dir", str(heads), "--once").exit_code == 0
    kept = sorted(heads.iterdir())[0].read_bytes()
    db.cut_tail(1)
    db.append(1)
    result = db.cli("audit", "publish-heads", "--dir", str(heads), "--once")
    assert result.exit_code == 1 and "it was rewritten from that entry" in result.output
    assert sorted(heads.iterdir())[0].read_bytes() == kept  # evidence is never replaced


def test_verify_takes_the_directory_of_published_heads(db, tmp_path):
    heads = tmp_path / "heads"
    assert db.cli("audit", "publish-heads", "--dir", str(heads), "--once").exit_code == 0
    db.append(1)
    assert db.cli("audit", "publish-heads", "--dir", str(heads), "--once").exit_code == 0
    last = db.last_seq()
    db.cut_tail(1)
    code, report = db.verify("--expect-head", str(heads))
    assert code == 1
    assert [(p["code"], p["seq"]) for p in report["problems"]] == [("ledger.truncated", last)]
    assert [h["seq"] for h in report["expected_heads"]] == [last - 1, last]


def test_head_record_refuses_what_is_not_a_head():
    from vdx.core.ledger import LedgerHead

    with pytest.raises(ValueError):
        HeadRecord("test-hub", datetime.now(UTC), LedgerHead(0, "0" * 64))
    with pytest.raises(ValueError):
        HeadRecord("", datetime.now(UTC), LedgerHead(1, "a" * 64))
    with pytest.raises(ValueError):
        HeadRecord("test-hub", datetime(2026, 1, 1), LedgerHead(1, "a" * 64))
