"""How long the console takes to render its pages with 100,000 documents in the database.

    python bench/bench_console.py [--documents 100000] [--database sqlite|postgresql]
                                  [--repeat 5] [--json FILE]

A hub's journal is filled the way the hub fills it: six agencies registered, signed
documents (each from one of three senders to one of three recipients) submitted to the
in-memory broker (:class:`vdx.broker.memory.MemoryBroker`) and handled by the real worker
(``HubWorker`` with ``load_services``: journal, hub-signed receipts, hash-chained ledger);
one package in fifty is tampered with, so the refusals have something to count. The
worker's clock runs over the last 30 days (it is the only thing changed), so the
overview's chart has 30 days of data. The build is slow (the agencies' and the hub's
signatures are real): about 10 minutes for 100,000 documents on SQLite, 2 cores.

Then, signed in as an auditor through the console's own login form, each page is fetched
``--repeat`` times with Starlette's test client (the whole app in-process: routing,
session, queries, templates, SVG), and the median and the slowest are printed: the
overview (one request without the health cache, the rest with it), the documents list,
a document's timeline and one of its receipts, the refusals and the agencies. The
baseline, measured in the same run, is the login page (routing, session and template
without a query), so the ratios say what the queries and drawing add. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from tests.support.hub import register_offline  # noqa: E402
from tests.support.registry import TestPki, database  # noqa: E402
from vdx import store  # noqa: E402
from vdx.broker.memory import MemoryBroker  # noqa: E402
from vdx.hub import journal  # noqa: E402
from vdx.hub import worker as hub_worker  # noqa: E402
from vdx.hub.supervisor import load_services  # noqa: E402
from vdx.hub.worker import HubWorker, WorkerConfig  # noqa: E402
from vdx.registry.admin import HubConfig  # noqa: E402
from vdx.xmldsig import pki  # noqa: E402

SENDERS = ("G22", "H41", "H49")
RECIPIENTS = ("K10", "K11", "K12")
PASSWORD = "bench-console-password"  # a throwaway account in a throwaway database


def build(engine, test_pki: TestPki, documents: int, say) -> HubConfig:
    """Register the agencies and put ``documents`` packages through the real worker,
    its clock spread over the last 30 days."""
    agencies, config = register_offline(engine, test_pki, SENDERS + RECIPIENTS, actor="bench")
    broker = MemoryBroker(bound=[a.code for a in agencies.values()])
    started = time.monotonic()
    for i in range(documents):
        sender = agencies[SENDERS[i % len(SENDERS)]]
        recipient = agencies[RECIPIENTS[(i // len(SENDERS)) % len(RECIPIENTS)]]
        body = sender.document(recipient.code)
        if i % 50 == 49:  # tampered after signing: signature.digest_mismatch
            body = body.replace("Thử nghiệm".encode(), b"Tampered!!", 1)
        broker.submit(body, user_id=sender.code)
        if (i + 1) % 10_000 == 0:
            say(f"signed {i + 1:,} packages ({time.monotonic() - started:.0f} s)")

    # The worker's clock: from 30 days ago to now, evenly, as the batches go by.
    first = journal.utcnow() - timedelta(days=30)
    step = timedelta(days=30) / max(1, documents)
    calls = {"n": 0}

    def clock():
        calls["n"] += 1
        return first + step * min(calls["n"] // 3, documents)

    original = hub_worker.utcnow
    hub_worker.utcnow = clock
    try:
        worker = HubWorker(WorkerConfig(hub_id="bench-hub", amqp_url="amqp://unused"),
                           store.session_factory(engine), load_services(config),
                           channel=broker.connect)
        broker.on_idle = worker.request_stop
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(30)
            with sessionmaker(engine)() as session:
                count = session.scalar(select(func.count()).select_from(journal.DocumentRow))
            say(f"hub recorded {count:,} documents ({time.monotonic() - started:.0f} s)")
    finally:
        hub_worker.utcnow = original
    return config


def sign_in(client) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = client.post("/login", data={"csrf": csrf, "next": "/", "name": "bench-auditor",
                                         "password": PASSWORD}, follow_redirects=False)
    if answer.status_code != 303:
        raise SystemExit(f"could not sign in to the console: HTTP {answer.status_code}")


def timed(client, path: str, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: HTTP {answer.status_code}")
    return {"path": path, "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1), "first_ms": round(times[0] * 1000, 1),
            "bytes": len(answer.content)}


def measure(backend: str, documents: int, repeat: int, say) -> dict:
    from starlette.testclient import TestClient

    from vdx.console import users
    from vdx.console.app import ConsoleConfig, create_app

    with tempfile.TemporaryDirectory(prefix="bench-console-") as name:
        tmp = Path(name)
        test_pki = TestPki.create(tmp / "pki")
        pki.issue_hub(test_pki.path, ec_key=True)
        with database(backend, tmp) as engine:
            started = time.perf_counter()
            config = build(engine, test_pki, documents, say)
            built = time.perf_counter() - started
            with sessionmaker(engine).begin() as session:
                users.add_user(session, "bench-auditor", "auditor", PASSWORD, actor="bench")
                held = session.scalar(select(func.count()).select_from(journal.DocumentRow))
                newest = session.scalars(select(journal.DocumentRow.document_id)
                                         .order_by(journal.DocumentRow.id.desc())
                                         .limit(1)).one()
                receipt = session.scalars(select(journal.ReceiptRow.id)
                                          .order_by(journal.ReceiptRow.id.desc())
                                          .limit(1)).one()
            app = create_app(ConsoleConfig(config, secret_key="bench-" + "k" * 32),
                             engine=engine)
            with TestClient(app, base_url="http://127.0.0.1") as client:
                sign_in(client)
                pages = {
                    "login page (baseline)": timed(client, "/login", repeat),
                    "overview": timed(client, "/", repeat),
                    "documents (newest first)": timed(client, "/documents", repeat),
                    "a document's timeline": timed(client, f"/documents/{newest}", repeat),
                    "one signed receipt": timed(client, f"/receipts/{receipt}", repeat),
                    "refusals": timed(client, "/refusals", repeat),
                    "agencies": timed(client, "/agencies", repeat),
                }
    base = pages["login page (baseline)"]["median_ms"] or 0.1
    for page in pages.values():
        page["ratio"] = round(page["median_ms"] / base, 1)
    return {"database": backend, "documents": held, "build_seconds": round(built, 1),
            "repeat": repeat, "pages": pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    result = measure(args.database, args.documents, args.repeat, say)
    print(f"{result['documents']:,} documents on {result['database']} "
          f"(built in {result['build_seconds']:.0f} s); {args.repeat} requests per page")
    print(f"{'page':<28} {'median':>9} {'slowest':>9} {'first':>9} {'x login':>8}")
    for label, page in result["pages"].items():
        print(f"{label:<28} {page['median_ms']:>7} ms {page['max_ms']:>7} ms "
              f"{page['first_ms']:>7} ms {page['ratio']:>7}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
