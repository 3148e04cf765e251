"""The gateway's memory under parallel unauthenticated uploads, against an authenticated one.

    python bench/bench_gateway_abuse.py [--parallel 8] [--size 64MiB] [--json FILE]

Needs RabbitMQ with its management API. A hub on SQLite with two agencies and one
connected system is set up as the tests do it (``tests.support.hub.running_hub``,
``vdx_adapters.gateway.systems.add_system``); the gateway runs as ``vdx gateway run`` in a
subprocess of its own, so that its resident memory is the gateway's alone. Then:

1. **idle**: its RSS once it answers requests;
2. **unauthenticated**: ``--parallel`` clients at once each POST ``sendEdoc`` with
   ``Content-Length`` ``--size`` and stream that many bytes as fast as the gateway takes
   them; half sign with a wrong secret, half name an unknown system. Each must be answered
   401 (``gateway.bad_signature`` / ``gateway.unknown_system``);
3. **baseline, authenticated**: one correctly signed ``sendEdoc`` of ``--size`` bytes
   (under the package limit), which the gateway does read in full before its checks
   refuse it: what one body costs when it is read.

The gateway's peak RSS in each phase is its ``VmHWM``, reset before the phase through
``/proc/<pid>/clear_refs``, so each phase's peak is its own; growth = peak − RSS just
before. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vdx_adapters.gateway import systems as gateway_systems  # noqa: E402
from vdx_adapters.gateway.sdk import SdkService, WireRequest  # noqa: E402

from bench.run import parse_size  # noqa: E402
from tests.support.hub import running_hub  # noqa: E402

MiB = 1024 * 1024
CHUNK = 256 * 1024
LISTING = {"servicetype": "eDoc", "messagetype": "edoc"}


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith(field + ":")).split()[1])


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, request: WireRequest, size: int) -> dict:
    """``request``'s headers, then ``size`` bytes of body streamed until the gateway
    answers or has taken it all; the HTTP status, the answer's ErrorCode and the bytes the
    gateway took."""
    head = [f"{request.method} /{request.operation} HTTP/1.1", f"Host: 127.0.0.1:{port}",
            f"Content-Length: {size}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in request.headers if k.lower() != "content-length"]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("utf-8"))
    sock.settimeout(0.2)
    chunk, sent, answer = b"\0" * CHUNK, 0, b""
    while sent < size:
        try:
            sent += sock.send(chunk[: min(CHUNK, size - sent)])
        except TimeoutError:  # the gateway stopped reading: has it answered?
            try:
                answer += sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if answer:
                break
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(60)
    try:
        while part := sock.recv(65536):
            answer += part
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    head_text, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1]) if head_text else 0
    try:
        code = json.loads(body).get("ErrorCode")
    except ValueError:
        code = None
    return {"status": status, "code": code, "body_bytes_sent": sent}


def phase(pid: int, port: int, requests: list[WireRequest], size: int) -> dict:
    reset_peak(pid)
    before = status_kib(pid, "VmRSS")
    results: list[dict] = [{}] * len(requests)

    def one(i: int) -> None:
        results[i] = post(port, requests[i], size)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    peak = status_kib(pid, "VmHWM")
    return {"rss_before_mb": round(before / 1024, 1), "peak_mb": round(peak / 1024, 1),
            "growth_mb": round((peak - before) / 1024, 1),
            "growth_per_body_byte": round((peak - before) * 1024 / (size * len(requests)), 4),
            "seconds": round(seconds, 2),
            "answers": sorted({f"{r['status']} {r['code']}" for r in results}),
            "body_bytes_taken_mb": round(sum(r["body_bytes_sent"] for r in results) / MiB, 1)}


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start") from None
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--size", type=parse_size, default=64 * MiB,
                    help="bytes each client posts (default 64MiB)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-abuse-") as name:
        tmp = Path(name)
        with running_hub("sqlite", tmp, agencies=("G22", "H41"), start=False) as hub:
            g22 = hub.agency("G22")
            credentials = tmp / "gateway-broker.json"
            new = gateway_systems.add_system(hub.admin, f"dms.bench.{os.getpid()}",
                                             (g22.code,), credentials_file=credentials)
            port = free_port()
            log = (tmp / "gateway.log").open("wb")
            gateway = subprocess.Popen(
                [sys.executable, "-m", "vdx_cli.cli", "gateway", "run", "--port", str(port),
                 "--credentials-file", str(credentials)],
                env=hub.environment(), stdout=log, stderr=log, cwd=ROOT,
                start_new_session=True)
            try:
                wait_listening(port, gateway)
                params = {"from": g22.code, **LISTING}
                package = g22.document(hub.agency("H41").code)
                # Warm the gateway up: one authenticated small request of each kind.
                post(port, SdkService(new.system.system_id, new.secret).build(
                    "getReceivedEdocList", LISTING), 2)
                time.sleep(1)
                idle = status_kib(gateway.pid, "VmRSS")
                hostile = []
                for i in range(args.parallel):
                    who = ((new.system.system_id, "not-the-secret") if i % 2 == 0
                           else (f"nobody.{i}", "x"))
                    hostile.append(SdkService(*who).build("sendEdoc", params, file=package))
                unauthenticated = phase(gateway.pid, port, hostile, args.size)
                time.sleep(1)
                signed = SdkService(new.system.system_id, new.secret).build(
                    "sendEdoc", params, file=package)
                authenticated = phase(gateway.pid, port, [signed], args.size)
            finally:
                gateway.terminate()
                try:
                    gateway.wait(20)
                except subprocess.TimeoutExpired:
                    gateway.kill()
                log.close()
    figures = {
        "parallel": args.parallel, "size_bytes": args.size, "cpus": os.cpu_count(),
        "idle_rss_mb": round(idle / 1024, 1),
        "unauthenticated": unauthenticated, "baseline_one_authenticated": authenticated,
        "unauthenticated_growth_over_baseline": (
            round(unauthenticated["growth_mb"] / authenticated["growth_mb"], 3)
            if authenticated["growth_mb"] else None),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
