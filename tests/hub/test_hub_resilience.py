"""Nothing lost, nothing duplicated: poison messages, SIGTERM, SIGKILL, broker restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pika
import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.support.hub import running_hub
from vdx.broker import provision
from vdx.core.ledger import make_hash_verifier
from vdx.hub import audit, journal
from vdx.hub.worker import POISON_AFTER


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("resilience")) as h:
        yield h


def test_poison_message_is_dead_lettered_with_a_rejected_receipt(hub, monkeypatch):
    import vdx.hub.worker

    real_admit = vdx.hub.worker.admit
    attempts = Counter()

    def crashing_admit(body, *args, **kwargs):
        if b"<!-- poison -->" in body:
            attempts["poison"] += 1
            raise RuntimeError("a bug this package triggers")
        return real_admit(body, *args, **kwargs)

    monkeypatch.setattr(vdx.hub.worker, "admit", crashing_admit)
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    good_before = g22.document(h41.code)
    poison = g22.document(h41.code).replace(b"?>", b"?><!-- poison -->", 1)
    g22.send(good_before)
    g22.send(poison)
    got = g22.inbox(3, timeout=30)
    kinds = sorted((m.receipt.kind, m.receipt.error_code or "") for m in got)
    assert kinds == [("accepted", ""), ("delivered", ""), ("rejected", "transport.poison")]
    # in its batch (and alone, when the batch had others), then POISON_AFTER times alone
    assert 1 + POISON_AFTER <= attempts["poison"] <= 2 + POISON_AFTER
    assert len(h41.inbox(1)) == 1  # the innocent one was not held back
    connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
    try:
        method, _props, body = connection.channel().basic_get(provision.DEAD_QUEUE,
                                                             auto_ack=True)
    finally:
        connection.close()
    assert method is not None and body == poison


_started: list[subprocess.Popen] = []


def _hub_process(hub, *args: str) -> subprocess.Popen:
    # Logs go to a file: a pipe nobody reads would fill up and block the workers.
    log = open(hub.config.pki_dir.parent / "hub.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "vdx_cli.cli", "hub", "run", *args],
                            env=hub.environment(), stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)
    _started.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_hub_left_running():
    """A failed test must not leave a hub (and its workers) consuming in the background."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _log_tail(hub) -> str:
    return (hub.config.pki_dir.parent / "hub.log").read_text()[-3000:]


def _workers(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", "multiprocessing.spawn"],
                         capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _wait_for_workers(parent: int, n: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _workers(parent)
        if len(pids) >= n:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"{n} workers did not start")


def _ledger_intact(hub) -> audit.AuditReport:
    with sessionmaker(hub.engine)() as session:
        return audit.verify_ledger(session, make_hash_verifier(hub.admin.hub_certificate()))


@pytest.mark.slow
def test_sigterm_finishes_in_flight_work_and_exits_cleanly(hub):
    hub.stop()  # the thread worker steps aside for a real process
    try:
        g22, h41 = hub.agency("G22"), hub.agency("H41")
        proc = _hub_process(hub)
        _wait_for_workers(proc.pid, 1)
        bodies = [g22.document(h41.code) for _ in range(50)]
        for body in bodies:
            g22.send(body)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, _log_tail(hub)
        # what the hub had not taken is still queued: a restart finishes it
        proc = _hub_process(hub)
        received = h41.inbox(50, timeout=60)
        assert sorted(m.body for m in received) == sorted(bodies)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        hub.start()


@pytest.mark.slow
def test_sigkill_and_broker_restart_lose_and_duplicate_nothing(hub, record_property):
    """Thousands of packages; workers SIGKILLed three times and the broker restarted."""
    hub.stop()
    total = int(os.environ.get("VDX_CRASH_TEST_PACKAGES", "2000"))
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    try:
        bodies = [g22.document(h41.code, h49.code) for _ in range(total)]
        proc = _hub_process(hub, "--workers", "2", "--prefetch", "100")
        _wait_for_workers(proc.pid, 2)
        kills = 0
        for i, body in enumerate(bodies):
            g22.send(body)
            if i and i % (total // 4) == 0 and kills < 3:
                victim = _workers(proc.pid)[0]
                os.kill(victim, signal.SIGKILL)
                kills += 1
            if i == total // 2:
                for agency in (g22, h41, h49):
                    agency.close()
                subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
                subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
                subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)
        seen = {}
        for agency in (h41, h49):
            raw = agency.inbox(total, timeout=240) + agency.drain(settle=3)
            ids = Counter(m.message_id for m in raw)
            unique = {m.message_id: m.body for m in raw}
            assert sorted(unique.values()) == sorted(bodies), f"{agency.code} lost packages"
            seen[agency.code] = (len(raw), len(raw) - len(ids))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        report = _ledger_intact(hub)
        assert report.intact, report.problems[:3]
        with sessionmaker(hub.engine)() as session:
            receipts = Counter(session.scalars(select(journal.ReceiptRow.kind)))
        assert receipts["delivered"] >= 2 * total and receipts["accepted"] >= total
        figures = {"sent": total, "kills": kills, "broker_restarts": 1,
                   "delivered_raw": {c: n for c, (n, _) in seen.items()},
                   "duplicates_seen": {c: d for c, (_, d) in seen.items()}, "lost": 0,
                   "ledger_entries": report.entries}
        record_property("crash_figures", figures)
        print("crash figures:", figures)
    finally:
        hub.start()


def test_metrics_and_structured_logs(hub):
    """Prometheus counters by outcome; one JSON object per log line, no document content."""
    import json
    import socket
    import urllib.request

    hub.stop()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        g22, h41 = hub.agency("G22"), hub.agency("H41")
        proc = _hub_process(hub, "--metrics-port", str(port))
        _wait_for_workers(proc.pid, 1)
        g22.send(g22.document(h41.code))
        g22.send(b"not xml at all")
        h41.inbox(1)
        g22.inbox(3)
        deadline = time.monotonic() + 20
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert 'vdx_documents_total{code="",outcome="accepted"} 1.0' in text
        assert 'vdx_documents_total{code="envelope.not_xml",outcome="rejected"} 1.0' in text
        assert "vdx_pipeline_seconds_bucket" in text and "vdx_deliveries_pending" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines = (hub.config.pki_dir.parent / "hub.log").read_text().splitlines()
        entries = []
        for line in lines:  # every line is one JSON object
            try:
                entries.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert any(e.get("event") == "accepted" for e in entries)
        assert not any("Thử nghiệm trục" in line for line in lines)  # the subject
    finally:
        hub.start()
