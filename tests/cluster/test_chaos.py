"""The smaller chaos run (issue 12): about a thousand signed packages through a three-node
RabbitMQ cluster, two hub processes and PostgreSQL while a broker node, a hub process and
the database each crash once. Nothing may be lost and the ledger must verify.

It runs ``bench/chaos.py`` as an operator would and reads its JSON; the figures it prints
(time each fault stalled the exchange) are reported, never asserted: timings belong to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]


def test_a_thousand_packages_survive_a_broker_node_a_hub_and_the_database_crashing(tmp_path):
    if shutil.which("rabbitmq-server") is None or not list(
            Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        require_service("RabbitMQ and PostgreSQL server binaries",
                        "the chaos run starts its own cluster and database from them")
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--documents", "1000",
         "--seed", "12", "--settle", "300", "--json", str(out)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert out.exists(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    print(done.stdout)
    assert result["sent"] == 1000, done.stdout
    assert result["lost"] == 0, done.stdout + done.stderr[-3000:]
    assert result["accepted"] == 1000, done.stdout
    assert sum(result["delivered"].values()) == result["accepted"], done.stdout
    assert result["ledger"]["intact"], result["ledger"]
    assert sorted(f["kind"] for f in result["faults"]) == ["broker", "database", "hub"]
    assert all(f["stalled_s"] is not None for f in result["faults"]), result["faults"]
    assert done.returncode == 0, done.stderr[-3000:]
