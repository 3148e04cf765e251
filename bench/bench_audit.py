"""What the receipts cross-check adds to ``vdx audit verify``, on SQLite and PostgreSQL.

    python bench/bench_audit.py [--entries 10000] [--database sqlite|postgresql|both]
                                [--repeat 3] [--json FILE]

For each database a hub's ledger of at least ``--entries`` entries is built the way the
hub builds it: two agencies registered (``vdx.registry.nodes.register_node``), signed
documents from one to the other submitted to the in-memory broker
(``vdx.broker.memory.MemoryBroker``) and handled by the real worker
(``vdx.hub.worker.HubWorker`` with ``load_services``: journal, hub-signed receipts,
hash-chained and signed ledger entries; two entries per document, ``accepted`` and
``delivered``). Then, on the same data, each ``--repeat`` times, best kept:

- **chain only** (the baseline: what ``vdx audit verify`` did before the cross-check):
  read every ledger row, check the chain, every hub signature and the recorded head
  (``vdx.core.ledger.audit_chain``, the first half of ``verify_ledger``);
- **with receipts**: ``vdx.hub.audit.verify_ledger``, what ``vdx audit verify`` runs:
  the same, then every receipt row read and checked against its entry (the body's
  SHA-256, the signed receipt parsed and its fields compared).

Wall-clock seconds (PostgreSQL's own work happens in its server process), and the ratio
with ÷ without. PostgreSQL needs ``VDX_TEST_POSTGRES_URL`` or the tests' default
(127.0.0.1:5432, database ``test``). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from tests.support.hub import register_offline  # noqa: E402
from tests.support.registry import TestPki, database  # noqa: E402
from vdx import store  # noqa: E402
from vdx.broker.memory import MemoryBroker  # noqa: E402
from vdx.core.ledger import LedgerHead, audit_chain, make_hash_verifier  # noqa: E402
from vdx.hub import audit, journal  # noqa: E402
from vdx.hub.supervisor import load_services  # noqa: E402
from vdx.hub.worker import HubWorker, WorkerConfig  # noqa: E402
from vdx.xmldsig import pki  # noqa: E402


def build_ledger(engine, test_pki: TestPki, entries: int) -> int:
    """Fill ``engine``'s journal through the real worker until it holds ``entries``
    ledger entries or more; how many it holds."""
    agencies, config = register_offline(engine, test_pki, ("G22", "H41"),
                                                actor="bench")
    g22, h41 = agencies["G22"], agencies["H41"]
    broker = MemoryBroker(bound=[g22.code, h41.code])
    for _ in range((entries + 1) // 2):  # accepted + delivered per document
        broker.submit(g22.document(h41.code), user_id=g22.code)
    worker = HubWorker(WorkerConfig(hub_id="bench-hub", amqp_url="amqp://unused"),
                       store.session_factory(engine), load_services(config),
                       channel=broker.connect)
    broker.on_idle = worker.request_stop
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    thread.join(1800)
    if thread.is_alive():
        raise RuntimeError("the worker was still busy after 30 minutes")
    with sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(journal.LedgerRow))


def chain_only(session, verify_sig) -> int:
    """The first half of :func:`vdx.hub.audit.verify_ledger`: the chain, signatures and
    recorded head, without the receipts table; the number of problems."""
    rows = session.scalars(select(journal.LedgerRow).order_by(journal.LedgerRow.seq)).all()
    head = session.get(journal.LedgerHeadRow, 1)
    entries = [journal.row_to_entry(r) for r in rows]
    recorded = LedgerHead(head.seq, head.entry_hash) if head else None
    return len(audit_chain(entries, verify_sig, expected_heads=(recorded,)).problems)


def with_receipts(session, verify_sig) -> int:
    report = audit.verify_ledger(session, verify_sig)
    assert report.intact, report.problems[:3]
    return len(report.problems)


def best_of(engine, step, verify_sig, repeat: int) -> float:
    sessions = sessionmaker(engine)
    times = []
    for _ in range(repeat):
        with sessions() as session:
            started = time.perf_counter()
            problems = step(session, verify_sig)
            times.append(time.perf_counter() - started)
        assert problems == 0, f"{step.__name__}: {problems} problems"
    return min(times)


def measure(backend: str, entries: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as name:
        tmp = Path(name)
        test_pki = TestPki.create(tmp / "pki")
        pki.issue_hub(test_pki.path, ec_key=True)
        with database(backend, tmp) as engine:
            started = time.perf_counter()
            held = build_ledger(engine, test_pki, entries)
            built = time.perf_counter() - started
            certificate = pki.load_certificate(pki.CaDir(test_pki.path).hub_cert)
            verify_sig = make_hash_verifier(certificate)
            with sessionmaker(engine)() as session:
                receipts = session.scalar(select(func.count()).select_from(journal.ReceiptRow))
            without = best_of(engine, chain_only, verify_sig, repeat)
            with_ = best_of(engine, with_receipts, verify_sig, repeat)
    return {"database": backend, "ledger_entries": held, "receipt_rows": receipts,
            "build_seconds": round(built, 1), "chain_only_seconds": round(without, 3),
            "with_receipts_seconds": round(with_, 3), "ratio": round(with_ / without, 2),
            "with_receipts_ms_per_entry": round(with_ * 1000 / held, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    backends = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    rows = []
    for backend in backends:
        row = measure(backend, args.entries, args.repeat)
        rows.append(row)
        print(f"{backend:<10} {row['ledger_entries']:>7,} entries {row['receipt_rows']:>7,} "
              f"receipts  chain only {row['chain_only_seconds']:>7.3f} s  with receipts "
              f"{row['with_receipts_seconds']:>7.3f} s  ÷ {row['ratio']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
