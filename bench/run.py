"""The hub against its physical limits, measured in one run on one machine.

    python bench/run.py [--sizes 10KB,1MiB,20MiB] [--count N] [--workers 1,2]
                        [--database sqlite|postgresql|both] [--json FILE]
                        [--prefetch N] [--ec] [--profile [DIR]]

(`make bench` runs it with the defaults, which finish in about ten minutes on a 2-core
machine; RabbitMQ with its management API is required, PostgreSQL for
``--database postgresql|both``, py-spy for ``--profile``.)

For each package size (signed packages made and signed before any timing; RSA-2048
agency keys, ECDSA P-256 with ``--ec``):

- **broker ceiling**: pika alone, the same bytes as persistent messages to a durable
  quorum queue (as the hub's), publisher confirms pipelined (window 500), one consumer
  process acknowledging each; messages/s from the first publish to the last delivery;
- **security floor**: ``vdx.core.envelope.load_tree`` + ``Verifier.verify(..., consume=True)``
  (as the hub calls it) against the registered certificate, in this process pinned to
  one core; packages/s;
- **hub end to end**, for each database and worker count, each on a fresh vhost and a
  fresh database (a SQLite file, or a PostgreSQL schema) with three agencies registered
  through ``vdx.registry.admin.Admin``, served by ``vdx hub run --workers N`` as a subprocess:
  the sender (SDK ``vdx.client.node.NodeClient``, pipelined confirms) submits ``--count``
  documents at once, each to one of two recipients, whose inboxes a consumer process
  drains; documents/s from the first submit to the last inbox arrival, and the time until
  the sender holds every receipt (``accepted`` and ``delivered``). Then the same number
  of fresh documents paced at HALF that rate: submit-to-inbox latency p50/p95/p99
  (matched by the ``x-vdx-document-id`` header of the delivery);
- **memory** of a hub worker: its idle resident set after a warm-up, then the peak
  (``VmHWM``, reset through ``/proc/<pid>/clear_refs``) while three packages go through
  one at a time, and again during the burst; (peak - idle) / package size;
- the ratios hub ÷ floor and hub ÷ ceiling, PostgreSQL ÷ SQLite, and the issue's
  targets, each met or not with the measured ratio.

Larger sizes use fewer packages (``--count`` × 100 KiB of packages per phase, at least
8). Prints a table and writes every figure to ``bench/results.json`` (or ``--json``).
``--profile`` also samples the workers with py-spy during every burst and writes the raw
stacks and a hot-spot summary under ``bench/profile/`` (or DIR); ``--profile-wall`` makes
those samples wall-clock (waiting included) instead of CPU time.

Everything it creates (vhosts, broker users, PostgreSQL schemas, temporary files, the hub
and consumer processes) is removed when it ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import math
import os
import platform
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig  # noqa: E402
from bench.amqp import Consumer, declare_quorum_queue, publish_all  # noqa: E402
from bench.profile import Sampler, render, summarise  # noqa: E402
from vdx import build
from vdx.broker import provision  # noqa: E402
from vdx.client.node import NodeClient  # noqa: E402
from vdx.core import envelope, model
from vdx.errors import VdxError  # noqa: E402
from vdx.xmldsig.trust import TrustStore  # noqa: E402
from vdx.xmldsig.verify import Verifier  # noqa: E402

HERE = Path(__file__).resolve().parent
KIB, MIB = 1024, 1024 * 1024
WARMUP = 3  # small documents through each fresh hub before anything is measured
MEMORY_PROBES = 3  # packages sent one at a time for the per-package memory peak
PER_PHASE_BYTES = 100 * KIB  # x --count: the bytes of packages in one burst
TARGETS = {"floor_ratio": 0.8, "p99_ms": 50.0, "memory_ratio": 3.0, "pg_within": 0.15}


# ------------------------------------------------------------------------ packages


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10KB, 1MiB)")
    unit = (m[2] or "B").lower()
    factor = {"b": 1, "kb": 1000, "kib": KIB, "mb": 1000_000, "mib": MIB, "gb": 10**9,
              "gib": 1024**3}[unit]
    return int(float(m[1]) * factor)


def size_label(n: int) -> str:
    for unit, factor in (("MiB", MIB), ("KiB", KIB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000} KB"
    return f"{n} B"


def _document(sender: str, recipient: str, document_id: str, pad: bytes) -> bytes:
    return build(model.DocumentPackage(
        sender=model.Organization(sender, organ_name="Văn phòng Chính phủ"),
        recipients=(model.Organization(recipient),), document_id=document_id,
        code=model.Code("7816", "VPCP-TTĐT"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=model.SignerInfo("Nguyễn Văn A", "KT. BỘ TRƯỞNG", "Thứ trưởng"),
        attachments=(model.Attachment("van-ban.pdf", "application/pdf", pad),) if pad else (),
    ))


@dataclass
class Package:
    document_id: str
    recipient: str
    body: bytes


class Packages:
    """Signed documents of about ``size`` bytes (signature included), made on demand,
    each with a DocumentId of its own, alternating between the recipients."""

    def __init__(self, sender: rig.Agency, recipients: list[str], size: int) -> None:
        self.sender, self.recipients, self.size = sender, recipients, size
        self._serial = 0
        probe = self.sender.signer.sign(_document(sender.code, recipients[0],
                                                  self._next_id(), b""))
        self._overhead = len(probe)  # a package with no attachment, signed

    def _next_id(self) -> str:
        self._serial += 1
        return f"{self.sender.code},2026/11/22,{self._serial}{secrets.token_hex(3)}/BENCH"

    def make(self, n: int) -> list[Package]:
        out = []
        for _ in range(n):
            recipient = self.recipients[self._serial % len(self.recipients)]
            doc_id = self._next_id()
            # base64 makes 4 characters of 3 bytes; the rest is the header and signature
            pad = max(0, (self.size - self._overhead - 120) * 3 // 4)
            body = self.sender.signer.sign(_document(self.sender.code, recipient, doc_id,
                                                     os.urandom(pad)))
            out.append(Package(doc_id, recipient, body))
        return out


def phase_count(size: int, count: int) -> int:
    return max(8, min(count, count * PER_PHASE_BYTES // size))


# ------------------------------------------------------------------- measurements


def measure_ceiling(bodies: list[bytes], n: int) -> dict:
    """pika alone: persistent, pipelined confirms, one consumer acknowledging."""
    with rig.temp_vhost(topology=False) as (_api, vhost):
        url = rig.admin_amqp_url(vhost)
        declare_quorum_queue(url, "bench.ceiling")
        consumer = Consumer(url, ["bench.ceiling"], key="message_id")
        undo = rig.CLEANUP.push("stop ceiling consumer", consumer.stop)
        try:
            sent = [bodies[i % len(bodies)] for i in range(n)]
            first, confirmed = publish_all(url, "bench.ceiling", sent)
            if not consumer.wait_for(n, 120):
                raise RuntimeError(f"the ceiling consumer got {consumer.count} of {n}")
            last = max(consumer.arrivals().values())
        finally:
            undo()
    return {"messages": n, "msgs_per_s": n / (last - first),
            "publish_confirm_per_s": n / (confirmed - first)}


def measure_floor(packages: list[Package], sender: rig.Agency, pki_dir: Path,
                  min_seconds: float = 3.0) -> dict:
    """load_tree + Verifier.verify against the registered certificate, on one core: the
    hub's own calls (it verifies the tree it parsed in place: ``consume=True``)."""
    verifier = Verifier(TrustStore.from_dir(pki_dir))
    registered = {sender.code: (sender.certificate,)}.__getitem__
    bodies = [p.body for p in packages]
    verifier.verify(envelope.load_tree(bodies[0]), sender.code, registered,
                    consume=True)  # warm caches
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous)})
    gc.collect()
    try:
        n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while True:
            for body in bodies:
                verifier.verify(envelope.load_tree(body), sender.code, registered, consume=True)
                n += 1
            wall = time.perf_counter() - wall0
            if wall >= min_seconds or (n >= 3 * len(bodies) and wall >= min_seconds / 3):
                break
        cpu = time.process_time() - cpu0
    finally:
        os.sched_setaffinity(0, previous)
    return {"packages": n, "pkgs_per_s": n / wall, "cpu_s_per_pkg": cpu / n}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Run:
    """One hub configuration: its site, hub process, consumer and sender."""

    def __init__(self, args, tmp: Path, the_pki: rig.Pki, the_site: rig.Site,
                 workers: int) -> None:
        self.args = args
        self.site = the_site
        self.sender = the_pki.agencies[0]
        self.recipients = [a.code for a in the_pki.agencies[1:]]
        self.hub = rig.HubProcess(the_site, tmp, workers, args.prefetch)
        self.pids = self.hub.wait_ready()
        self.consumer = Consumer(the_site.amqp_url,
                                 [provision.inbox_queue(c) for c in self.recipients])
        self._undo_consumer = rig.CLEANUP.push("stop consumer", self.consumer.stop)
        self.client = NodeClient(the_site.logins[self.sender.code], self.sender.code,
                                 prefetch=500).connect()
        self._undo_client = rig.CLEANUP.push("close client", lambda: self.client.close(1))
        self.expected = 0  # inbox arrivals expected so far
        self.receipts = 0
        self.submitted: dict[str, float] = {}

    def close(self) -> None:
        self._undo_client()
        self._undo_consumer()
        self.hub.stop()

    def _send(self, package: Package) -> None:
        self.submitted[package.document_id] = time.monotonic()
        self.client.send(package.body, wait=False)

    def _wait_inbox(self, timeout: float, stall: float = 60.0) -> None:
        """Until every expected delivery arrived; fails after ``timeout`` seconds, or after
        ``stall`` seconds without a single arrival (a broker restart, a stuck hub)."""
        deadline = time.monotonic() + timeout
        seen, since = self.consumer.count, time.monotonic()
        while not self.consumer.wait_for(self.expected, 1.0):
            now, count = time.monotonic(), self.consumer.count
            if count != seen:
                seen, since = count, now
            if now > deadline or now - since > stall or not self.consumer.process.is_alive():
                consumer = "alive" if self.consumer.process.is_alive() else "dead"
                hub = "running" if self.hub.proc.poll() is None else "exited"
                raise RuntimeError(
                    f"{count} of {self.expected} deliveries arrived (none for "
                    f"{now - since:.0f} s; consumer {consumer}, hub {hub}); "
                    f"hub log: {self.hub.log_tail(600)}")

    def _wait_receipts(self, timeout: float) -> float:
        """Take receipts until 2 per document sent (accepted, delivered)."""
        deadline = time.monotonic() + timeout
        while self.receipts < 2 * self.expected:
            self.receipts += sum(1 for _ in self.client.receipts(timeout=0.02))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.receipts} of {2 * self.expected} receipts")
        return time.monotonic()

    def send_one_by_one(self, packages: list[Package], timeout: float = 120) -> None:
        for package in packages:
            self._send(package)
            self.expected += 1
            self._wait_inbox(timeout)
        self.client.flush()

    def rss(self) -> dict[int, int]:
        return {pid: rig.status_kib(pid, "VmRSS") for pid in self.pids}

    def reset_peaks(self) -> dict[int, int]:
        for pid in self.pids:
            rig.reset_peak(pid)
        return self.rss()

    def peak_growth(self, baseline: dict[int, int]) -> int:
        """Bytes: the largest (VmHWM - baseline RSS) among the workers."""
        return max(rig.status_kib(pid, "VmHWM") - kib for pid, kib in baseline.items()) * KIB

    def burst(self, packages: list[Package], profile_dir: Path | None,
              label: str) -> dict:
        sampler = Sampler(self.pids, profile_dir, label, wall=self.args.profile_wall) \
            if profile_dir else None
        meter = self.cpu_meter(sampler)
        meter.start()
        try:
            first = time.monotonic()
            for package in packages:
                self._send(package)
            self.expected += len(packages)
            self.client.flush(timeout=600)
            self._wait_inbox(900)
        finally:
            cpu = meter.stop()
            if sampler:
                files = sampler.stop()
        arrivals = self.consumer.arrivals()
        times = sorted(arrivals[p.document_id] for p in packages)
        last, half = times[-1], len(times) // 2
        receipts_done = self._wait_receipts(120)
        out = {"documents": len(packages), "docs_per_s": len(packages) / (last - first),
               "seconds": last - first,
               "receipts_docs_per_s": len(packages) / (receipts_done - first),
               # a rate that falls during the burst means work growing with the journal
               "first_half_docs_per_s": half / (times[half - 1] - first) if half else None,
               "second_half_docs_per_s": (len(times) - half) / (last - times[half - 1])
               if half and last > times[half - 1] else None,
               "cpu_cores": cpu}
        if sampler:
            out["profile"] = summarise(files, seconds=sampler.seconds, workers=len(self.pids),
                                       rate=sampler.rate)
            out["profile"]["wall_clock"] = sampler.wall
            out["profile_files"] = [str(f) for f in files]
        return out

    def cpu_meter(self, sampler: Sampler | None = None) -> rig.CpuMeter:
        groups = {"hub workers": self.pids, "hub supervisor": [self.hub.proc.pid],
                  "bench sender (SDK)": [os.getpid()],
                  "bench consumer": [self.consumer.process.pid]}
        if sampler:
            groups["py-spy"] = [p.pid for p in sampler.procs]
        return rig.CpuMeter(groups)

    def paced(self, packages: list[Package], rate: float) -> dict:
        meter = self.cpu_meter()
        meter.start()
        start = time.monotonic() + 0.05
        for i, package in enumerate(packages):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._send(package)
        self.expected += len(packages)
        self.client.flush(timeout=600)
        self._wait_inbox(600)
        cpu = meter.stop()
        arrivals = self.consumer.arrivals()
        latencies = [(arrivals[p.document_id] - self.submitted[p.document_id]) * 1000
                     for p in packages]
        self._wait_receipts(120)
        return {"documents": len(packages), "rate_per_s": rate, "cpu_cores": cpu,
                "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                "p99_ms": percentile(latencies, 99), "max_ms": max(latencies)}


def measure_hub(args, tmp: Path, the_pki: rig.Pki, backend: str, workers: int, size: int,
                warmup: list[Package], probes: list[Package], burst: list[Package],
                paced: list[Package]) -> dict:
    label = f"{size_label(size).replace(' ', '')}-{backend}-w{workers}"
    with rig.site(backend, tmp, the_pki) as the_site:
        run = Run(args, tmp, the_pki, the_site, workers)
        try:
            run.send_one_by_one(warmup)
            run._wait_receipts(60)
            idle = run.reset_peaks()
            run.send_one_by_one(probes)
            one_peak = run.peak_growth(idle)
            run._wait_receipts(120)
            run.reset_peaks()  # to the current RSS, which the probes may have left higher
            result = run.burst(burst, args.profile, label)
            burst_peak = run.peak_growth(idle)
            rate = args.paced_rate or result["docs_per_s"] / 2
            n_paced = max(min(len(paced), 8), min(len(paced), round(rate * args.paced_seconds)))
            result["latency"] = run.paced(paced[:n_paced], rate)
            result["memory"] = {
                "idle_rss_bytes": max(idle.values()) * KIB,
                "one_at_a_time_peak_bytes": one_peak,
                "one_at_a_time_ratio": one_peak / size,
                "burst_peak_bytes": burst_peak,
                "burst_ratio": burst_peak / size,
            }
        finally:
            run.close()
    return result


# ---------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    overview = rig.broker_api().get("overview") or {}
    versions = {}
    for dist in ("lxml", "signxml", "cryptography", "pika", "SQLAlchemy", "psycopg"):
        try:
            from importlib.metadata import version
            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001
            versions[dist] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kib / MIB, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "rabbitmq": overview.get("rabbitmq_version"),
            "erlang": overview.get("erlang_version"),
            "postgresql": rig.postgres_version(), "libraries": versions}


def code_version() -> dict:
    """Which hub code was measured: the commit, and the files under vdx/ that differ from
    it (read-only git). An exported tree carries its commit in ``.bench-commit``."""
    import subprocess

    root = HERE.parent
    marker = root / ".bench-commit"
    if marker.exists():
        return {"commit": marker.read_text().strip(), "modified": [], "tree": str(root)}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                 "vdx", "cli.py", "schemas"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": [], "tree": str(root)}
    return {"commit": commit or None, "modified": [line[3:] for line in status.splitlines()],
            "tree": str(root)}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(results: dict) -> list[dict]:
    out = []
    hub, floor = results["hub"], results["floor"]
    for key, r in hub.items():
        size, backend, workers = key.split("|")
        if workers != str(max(results["options"]["workers"])):
            continue
        ratio = r["docs_per_s"] / floor[size]["pkgs_per_s"]
        out.append({"target": f"hub e2e ({workers} workers, {backend}, {size}) >= "
                              f"{TARGETS['floor_ratio']} x floor",
                    "measured": f"{ratio:.2f} x floor ({r['docs_per_s']:.0f} vs "
                                f"{floor[size]['pkgs_per_s']:.0f}/s)",
                    "met": ratio >= TARGETS["floor_ratio"]})
    for key, r in hub.items():
        size, backend, workers = key.split("|")
        p99 = r["latency"]["p99_ms"]
        out.append({"target": f"p99 submit-to-inbox <= {TARGETS['p99_ms']:.0f} ms at half max "
                              f"rate ({size}, {backend}, {workers} workers)",
                    "measured": f"{p99:.0f} ms at {r['latency']['rate_per_s']:.1f}/s "
                                f"(n={r['latency']['documents']})",
                    "met": p99 <= TARGETS["p99_ms"]})
    for key, r in hub.items():
        size, backend, workers = key.split("|")
        if parse_size(size.replace(" ", "")) < 20 * MIB:
            continue
        m = r["memory"]
        for how, ratio, peak in (
                ("one package at a time", m["one_at_a_time_ratio"], m["one_at_a_time_peak_bytes"]),
                (f"burst of {r['documents']}", m["burst_ratio"], m["burst_peak_bytes"])):
            out.append({"target": f"peak worker memory <= {TARGETS['memory_ratio']:.0f} x package "
                                  f"({size}, {how}, {backend}, {workers} workers)",
                        "measured": f"{ratio:.1f} x ({peak / MIB:,.0f} MiB over idle)",
                        "met": ratio <= TARGETS["memory_ratio"]})
    for key, r in hub.items():
        size, backend, workers = key.split("|")
        if backend != "postgresql" or f"{size}|sqlite|{workers}" not in hub:
            continue
        lite = hub[f"{size}|sqlite|{workers}"]["docs_per_s"]
        ratio = r["docs_per_s"] / lite
        out.append({"target": f"PostgreSQL within {TARGETS['pg_within']:.0%} of SQLite "
                              f"({size}, {workers} workers)",
                    "measured": f"{ratio:.2f} x SQLite ({r['docs_per_s']:.0f} vs {lite:.0f}/s)",
                    "met": abs(ratio - 1) <= TARGETS["pg_within"]})
    return out


def table(results: dict) -> str:
    lines = []
    m = results["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; Python "
                 f"{m['python']}, RabbitMQ {m['rabbitmq']}, PostgreSQL {m['postgresql']}")
    code = results["code"]
    lines.append(f"Code: {code['commit']}" + (f" + uncommitted changes to "
                                               f"{', '.join(code['modified'])}"
                                               if code["modified"] else "")
                 + f"; agency keys {results['options']['key']}; hub prefetch "
                 f"{results['options']['prefetch']}; {results['when']}")
    lines.append("")
    lines.append("| package | bytes | broker ceiling msg/s | security floor pkg/s (1 core) |")
    lines.append("|---|---:|---:|---:|")
    for size, f in results["floor"].items():
        c = results["ceiling"].get(size, {}).get("msgs_per_s", math.nan)
        lines.append(f"| {size} | {f['bytes']:,} | {c:,.0f} | {f['pkgs_per_s']:,.1f} |")
    lines.append("")
    lines.append("| package | db | workers | hub docs/s | + all receipts | hub ÷ floor | "
                 "hub ÷ ceiling | at rate/s | p50 ms | p95 ms | p99 ms | "
                 "worker peak over idle, 1 at a time | ÷ size | in the burst | ÷ size |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, r in results["hub"].items():
        size, backend, workers = key.split("|")
        lat, mem = r["latency"], r["memory"]
        lines.append(
            f"| {size} | {backend} | {workers} | {r['docs_per_s']:,.1f} | "
            f"{r['receipts_docs_per_s']:,.1f} | {r['hub_over_floor']:.2f} | "
            f"{r['hub_over_ceiling']:.3f} | {lat['rate_per_s']:,.1f} | "
            f"{lat['p50_ms']:,.1f} | {lat['p95_ms']:,.1f} | {lat['p99_ms']:,.1f} | "
            f"{mem['one_at_a_time_peak_bytes'] / MIB:,.1f} MiB | "
            f"{mem['one_at_a_time_ratio']:.1f} | {mem['burst_peak_bytes'] / MIB:,.1f} MiB | "
            f"{mem['burst_ratio']:.1f} |")
    for what, why in results["failed"].items():
        lines.append(f"\nFAILED {what}: {why[:300]}")
    lines.append("")
    parts = list(dict.fromkeys(k for r in results["hub"].values() for k in r["cpu_cores"]))
    lines.append("CPU during the burst, in cores (of " f"{m['cores']}" "); `other` is the "
                 "rest of the machine:")
    lines.append("")
    lines.append("| package | db | workers | " + " | ".join(parts) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(parts))
    for key, r in results["hub"].items():
        size, backend, workers = key.split("|")
        lines.append(f"| {size} | {backend} | {workers} | " + " | ".join(
            f"{r['cpu_cores'].get(p, 0):.2f}" for p in parts) + " |")
    lines.append("")
    lines.append("| target | measured | |")
    lines.append("|---|---|---|")
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {verdict(t['met'])} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def twice(what: str, results: dict, measure):
    """``measure()``, tried again once (on a fresh site) if it fails: other work on a
    shared machine may restart the broker under us. None, noted in results, if both fail."""
    for attempt in (1, 2):
        try:
            return measure()
        except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
            print(f"   {what}: attempt {attempt} failed: {str(exc)[:800]}", file=sys.stderr,
                  flush=True)
            if attempt == 2:
                results["failed"][what] = str(exc)[:2000]
    return None


def positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate above 0 per second")
    return rate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--sizes", default="10KB,1MiB,20MiB",
                    type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
                    help="package sizes, signature included (default 10KB,1MiB,20MiB)")
    ap.add_argument("--count", type=int, default=1000,
                    help="documents per burst for the smallest sizes; larger sizes get "
                         "count x 100 KiB of packages, at least 8 (default 1000)")
    ap.add_argument("--workers", default="1,2",
                    type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                    help="hub worker counts (default 1,2)")
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--prefetch", type=int, default=200, help="vdx hub run --prefetch")
    ap.add_argument("--ec", action="store_true",
                    help="ECDSA P-256 agency keys instead of RSA-2048")
    ap.add_argument("--paced-seconds", type=float, default=6.0,
                    help="length of the paced latency phase (default 6)")
    ap.add_argument("--paced-rate", type=positive_rate, default=None, metavar="PER_S",
                    help="pace the latency phase at this rate instead of half the burst's "
                         "(to see latency without load; the p99 target is at half)")
    ap.add_argument("--json", type=Path, default=HERE / "results.json",
                    help="where to write the results (default bench/results.json)")
    ap.add_argument("--profile", nargs="?", type=Path, const=HERE / "profile", default=None,
                    help="sample the workers with py-spy during each burst (default "
                         "directory bench/profile)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before each hub configuration, wait up to SECONDS for the machine "
                         "to be idle (< 0.25 cores busy): for shared machines (default 0)")
    ap.add_argument("--profile-wall", action="store_true",
                    help="with --profile: sample waiting workers too (py-spy --idle), so "
                         "the shares are of wall-clock time, not CPU time")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        rig.broker_api().get("overview")
    except VdxError as exc:  # before anything is created: nothing to clean up
        print(f"bench: {exc.message}", file=sys.stderr)
        return 2
    rig.install_signal_handlers()
    started = time.monotonic()
    backends = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {"sizes": [size_label(s) for s in args.sizes], "count": args.count,
                    "workers": args.workers, "databases": backends,
                    "prefetch": args.prefetch,
                    "key": "ECDSA P-256" if args.ec else "RSA-2048 / SHA-256"},
        "code": code_version(), "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "ceiling": {}, "floor": {}, "hub": {}, "skipped": [], "failed": {}, "quiet": {},
    }
    if "postgresql" in backends and (why := rig.postgres_available()):
        print(f"PostgreSQL unavailable ({why}): measuring SQLite only", file=sys.stderr)
        results["skipped"].append(f"postgresql: {why}")
        backends.remove("postgresql")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for old in args.profile.glob("*-worker*.txt"):
            old.unlink()
    try:
        tmp = rig.temp_dir()
        the_pki = rig.make_pki(tmp / "pki", ("G22", "H41", "H49"), ec_agencies=args.ec)
        sender = the_pki.agencies[0]
        recipients = [a.code for a in the_pki.agencies[1:]]
        small = Packages(sender, recipients, 10_000)
        warmup = small.make(WARMUP)
        for size in args.sizes:
            label = size_label(size)
            n = phase_count(size, args.count)
            t = time.monotonic()
            maker = Packages(sender, recipients, size)
            probes, burst, paced = maker.make(MEMORY_PROBES), maker.make(n), maker.make(n)
            print(f"\n== {label}: {len(burst[0].body):,} bytes; {n} per burst "
                  f"(signed {2 * n + MEMORY_PROBES} in {time.monotonic() - t:.1f} s)",
                  flush=True)
            if args.wait_quiet:
                results["quiet"][f"{label} ceiling+floor"] = rig.wait_until_quiet(
                    args.wait_quiet)
            ceiling_n = max(20, min(5 * args.count, 2 * args.count * PER_PHASE_BYTES // size))
            c = twice(f"{label} ceiling", results, functools.partial(
                measure_ceiling, [p.body for p in burst], ceiling_n))
            if c:
                results["ceiling"][label] = c
                print(f"   broker ceiling {c['msgs_per_s']:,.0f} msg/s", flush=True)
            f = results["floor"][label] = measure_floor(burst, sender, the_pki.path)
            f["bytes"] = len(burst[0].body)
            print(f"   security floor {f['pkgs_per_s']:,.1f} pkg/s", flush=True)
            for backend in backends:
                for workers in args.workers:
                    t = time.monotonic()
                    key = f"{label}|{backend}|{workers}"
                    if args.wait_quiet:
                        quiet = rig.wait_until_quiet(args.wait_quiet)
                        results["quiet"][key] = quiet
                        if not quiet["quiet"]:
                            print(f"   (machine still busy: {quiet['busy_cores']} cores used "
                                  f"by others after {quiet['waited_s']:.0f} s; measuring)",
                                  flush=True)
                    r = twice(key, results, functools.partial(
                        measure_hub, args, tmp, the_pki, backend, workers, size, warmup,
                        probes, burst, paced))
                    if r is None:
                        continue
                    r["hub_over_floor"] = r["docs_per_s"] / f["pkgs_per_s"]
                    r["hub_over_ceiling"] = r["docs_per_s"] / c["msgs_per_s"] if c else math.nan
                    results["hub"][key] = r
                    lat, mem = r["latency"], r["memory"]
                    print(f"   hub {backend:<10} {workers} worker(s): "
                          f"{r['docs_per_s']:,.1f} docs/s; p50/p95/p99 {lat['p50_ms']:.0f}/"
                          f"{lat['p95_ms']:.0f}/{lat['p99_ms']:.0f} ms at "
                          f"{lat['rate_per_s']:.1f}/s; memory {mem['one_at_a_time_ratio']:.1f}"
                          f"x / {mem['burst_ratio']:.1f}x  ({time.monotonic() - t:.0f} s)",
                          flush=True)
                    print("      burst CPU (cores): " + ", ".join(
                        f"{k} {v:.2f}" for k, v in r["cpu_cores"].items()), flush=True)
                    if "profile" in r:
                        print(render(r["profile"], indent="      "), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        rig.CLEANUP.run_all()
    results["targets"] = targets(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    print(f"\n{results['seconds']:.0f} s; results in {args.json}")
    if args.profile:
        summary = {k: r["profile"] for k, r in results["hub"].items() if "profile" in r}
        (args.profile / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
