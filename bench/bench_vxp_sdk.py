"""The real VXP SDK (Java) through the gateway, next to the Python SDK, in one run.

    python bench/bench_vxp_sdk.py [--count 200] [--size 24000] [--sdk 2.0.1] [--json FILE]

Needs RabbitMQ (with its management API), ``java``/``javac`` and ``../shared/vxp-sdk``.
One machine, one run, so the figures are comparable with each other (not with another
machine's):

- a hub (``vdx hub run`` as a subprocess, SQLite) with four agencies; the gateway served
  by uvicorn in this process (so its steps can be timed), signing for the sender's node;
- **Java SDK, one JVM each side** (``tests/adapters/vxp_sdk/SdkDriver.java`` in bench mode, a new
  service object per call as the SDK's examples make them): ``sendEdoc`` of ``--count``
  unsigned packages of ``--size`` bytes (sends/s, each answered with the hub's verdict);
  then the receiver's list, get and ``done`` of each (documents/s); then the two at once
  on fresh packages (documents/s end to end); and the SDK's fixed cost per call (an empty
  ``getReceivedEdocList``);
- **where a send's time goes**: the JVM's time per ``sendEdoc`` against the gateway's own
  (``Gateway.admit`` on the headers, then ``Gateway.serve`` on the body) and their
  steps: authentication (system lookup, opening the stored secret, HMAC, replay
  store), parse, the gateway's signature, the hub's checks (parse, schema, signature,
  authorise), the database (record, commits), the broker (publish with confirm); steps
  nest (the replay store's commit is in "authenticate" and in "db: commits"), so they
  do not add up; and the SDK's TCP connections to the gateway (does it reuse them?);
- **Python SDK** (``vdx.client.node.NodeClient``, AMQP) between two other agencies, the same
  package size: sends/s (each confirmed by the broker, the client signing), sends/s
  waiting for the hub's ``accepted`` receipt of each (what ``sendEdoc``'s answer
  carries), and deliveries/s (verified, answered with status 01, acknowledged);
- the ratios Java ÷ Python. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.adapters.vxp_sdk import runner  # noqa: E402
from tests.support.gateway import running_gateway, serve_http, write_key  # noqa: E402
from tests.support.hub import Agency, running_hub  # noqa: E402
from vdx import build  # noqa: E402
from vdx.core import model  # noqa: E402


def package(sender: Agency, to: str, size: int) -> model.DocumentPackage:
    """A document of about ``size`` bytes once built (an attachment fills it)."""
    filler = os.urandom(max(0, (size - 3000) * 3 // 4))
    return model.DocumentPackage(
        sender=model.Organization(sender.code), recipients=(model.Organization(to),),
        document_id=f"{sender.code},2026/11/22,{uuid.uuid4().hex[:8]}/BENCH",
        code=model.Code("1", "BENCH"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="Đo tốc độ cổng VXP",
        signer=model.SignerInfo("Nguyễn Văn A"),
        attachments=(model.Attachment("phu-luc.bin", "application/octet-stream", filler),))


# ------------------------------------------------------------------ gateway timing


class StepTimer:
    """Wraps gateway functions to add up their time, per step, inside requests only."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._undo: list[Callable[[], None]] = []
        self._local = threading.local()
        self.enabled = False

    def wrap(self, owner: object, attribute: str, step: str, *, outer: bool = False) -> None:
        original = getattr(owner, attribute, None)
        if original is None:  # the gateway changed: time what is there, and say what not
            print(f"not timed (renamed?): {getattr(owner, '__name__', type(owner).__name__)}"
                  f".{attribute}", file=sys.stderr)
            return
        local, times = self._local, self.times

        def timed(*args, **kwargs):
            if not self.enabled or not (outer or getattr(local, "active", False)):
                return original(*args, **kwargs)
            if outer:
                local.active = True
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times[step].append((time.perf_counter() - started) * 1000)
                if outer:
                    local.active = False

        own = attribute in vars(owner)  # else inherited (a bound method): delete to undo
        setattr(owner, attribute, timed)
        self._undo.append(lambda: setattr(owner, attribute, original) if own
                          else delattr(owner, attribute))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def summary(self, per: int) -> dict[str, float]:
        """Milliseconds per send for each step (its total divided by ``per``)."""
        return {step: round(sum(values) / per, 3) for step, values in self.times.items()}


def instrument(gateway) -> StepTimer:
    import sqlalchemy.orm
    from vdx_adapters.gateway import service

    import vdx.hub.pipeline
    import vdx.xmldsig.sign

    timer = StepTimer()
    # The HTTP app calls admit (headers) and then serve (the body), each in its own
    # thread-pool call: both are outer steps, and the gateway's time is their sum.
    timer.wrap(gateway, "admit", "gateway.admit (all)", outer=True)
    timer.wrap(gateway, "serve", "gateway.serve (all)", outer=True)
    timer.wrap(gateway, "_admit", "authenticate (all)")
    timer.wrap(service.gateway, "find_system", "authenticate: db system lookup")
    timer.wrap(service.gateway, "open_secret", "authenticate: open the secret")
    timer.wrap(service, "authenticate", "authenticate: HMAC and timestamp")
    timer.wrap(service.mailbox, "remember_signature", "authenticate: db replay store")
    timer.wrap(service, "parse_untrusted", "parse before signing")
    timer.wrap(vdx.xmldsig.sign.Signer, "sign", "gateway signs for the node")
    timer.wrap(vdx.hub.pipeline, "hardened_parse", "hub checks: parse")
    timer.wrap(vdx.hub.pipeline, "check_schema", "hub checks: schema")
    timer.wrap(vdx.hub.pipeline, "verify_signature", "hub checks: signature")
    timer.wrap(vdx.hub.pipeline, "read_package", "hub checks: read package")
    timer.wrap(vdx.hub.pipeline, "authorise", "hub checks: authorise")
    timer.wrap(service.mailbox, "find_sent", "db: idempotency lookup")
    timer.wrap(service.mailbox, "record_sent", "db: record sent")
    timer.wrap(sqlalchemy.orm.Session, "commit", "db: commits")
    timer.wrap(gateway, "_publish", "broker: publish + confirm")
    timer.wrap(service.mailbox, "mark_published", "db: mark published")
    return timer


# --------------------------------------------------------------------------- phases


def per_second(count: int, ms: float) -> float:
    return round(count / (ms / 1000), 1) if ms > 0 else 0.0


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "0B": "CLOSING", "09": "LAST_ACK"}


def client_sockets(port: int) -> dict[str, int]:
    """TCP sockets of clients connected (or having been) to ``port``, by state: whether
    the SDK reuses its connections (from /proc/net/tcp, as ``ss`` reads it)."""
    counts: dict[str, int] = defaultdict(int)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port:
                counts[TCP_STATES.get(fields[3], fields[3])] += 1
    return dict(counts)


def mailbox_count(system) -> int:
    return system.call("countReceiveEdoc", method="GET")["count"]


def java_phases(args, hub, world, endpoint: str, tmp: Path) -> dict:
    G22, H41 = hub.agency("G22"), hub.agency("H41")
    key, cert = write_key(G22, tmp)
    from vdx_adapters.gateway import systems as gateway_systems

    gateway_systems.sign_for(hub.admin, G22.code, key, cert)
    g22, h41 = world.system("g22"), world.system("h41")
    classes = runner.compile_java(runner.HERE / "SdkDriver.java", args.sdk, tmp / "driver")

    def files(count: int, tag: str) -> list[str]:
        out = []
        for i in range(count):
            path = tmp / "packages" / f"{tag}-{i}.edxml"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(build(package(G22, H41.code, args.size)))
            out.append(str(path))
        return out

    zone = "Asia/Ho_Chi_Minh"
    sender = runner.SdkDriver(classes, args.sdk, zone, tmp / "sender.log")
    receiver = runner.SdkDriver(classes, args.sdk, zone, tmp / "receiver.log")
    try:
        sender.configure("g22", endpoint, g22.system_id, g22.secret, tmp / "store-g22")
        receiver.configure("h41", endpoint, h41.system_id, h41.secret, tmp / "store-h41")
        send_params = runner.params(**{"from": G22.code}, servicetype="eDoc",
                                    messagetype="edoc")
        size = Path(files(1, "size")[0]).stat().st_size
        # warm up both JVMs, the gateway and the hub
        warm = sender.bench(mode="send", config="g22", params=send_params,
                            files=files(10, "warm"))
        assert not warm["failures"], warm["failures"][:2]
        got = receiver.bench(mode="receive", config="h41", n=10, timeout_ms=60000)
        assert got["taken"] == 10 and not got["failures"], got

        timer = instrument(world.gateway)
        timer.enabled = True
        sent = sender.bench(mode="send", config="g22", params=send_params,
                            files=files(args.count, "send"))
        timer.enabled = False
        timer.restore()
        assert not sent["failures"], sent["failures"][:2]
        wait_until(lambda: mailbox_count(h41) >= args.count, 120, "the receiver's mailbox")
        received = receiver.bench(mode="receive", config="h41", n=args.count,
                                  timeout_ms=300000)
        assert received["taken"] == args.count and not received["failures"], received

        fresh = files(args.count, "e2e")
        results: dict = {}
        started = time.perf_counter()
        thread = threading.Thread(target=lambda: results.update(receiver.bench(
            mode="receive", config="h41", n=args.count, timeout_ms=300000)))
        thread.start()
        both = sender.bench(mode="send", config="g22", params=send_params, files=fresh)
        thread.join()
        e2e_ms = (time.perf_counter() - started) * 1000
        assert results.get("taken") == args.count and not both["failures"], results

        port = int(endpoint.rsplit(":", 1)[1])
        sockets_before = client_sockets(port)
        empty = receiver.bench(mode="call", config="h41", op="getReceivedEdocList",
                               args=[runner.params(servicetype="eDoc", messagetype="edoc")],
                               n=100)
        sockets_after = client_sockets(port)
        assert not empty["failures"], empty["failures"][:2]
    finally:
        sender.close()
        receiver.close()
    steps = timer.summary(args.count)
    jvm_send = statistics.fmean(sent["ms"])
    handled = steps.get("gateway.admit (all)", 0.0) + steps.get("gateway.serve (all)", 0.0)
    return {
        "sdk": args.sdk, "package_bytes": size, "count": args.count,
        "sends_per_s": per_second(args.count, sent["total_ms"]),
        "send_ms_p50": round(statistics.median(sent["ms"]), 2),
        "list_get_done_per_s": per_second(args.count, received["total_ms"]),
        "get_done_ms_p50": round(statistics.median(received["ms"]), 2),
        "end_to_end_per_s": per_second(args.count, e2e_ms),
        "empty_list_call_ms_p50": round(statistics.median(empty["ms"]), 2),
        "client_sockets_to_the_gateway": {"before 100 empty list calls": sockets_before,
                                          "after": sockets_after},
        "send_breakdown_ms": {"JVM sendEdoc (all)": round(jvm_send, 3), **steps,
                              "outside the gateway's admit + serve (SDK, HTTP, uvicorn)":
                                  round(jvm_send - handled, 3)},
    }


def python_phases(args, hub) -> dict:
    from vdx.client.node import NodeClient
    from vdx.xmldsig.trust import TrustStore

    H49, H14 = hub.agency("H49"), hub.agency("H14")
    trust = TrustStore.from_dir(hub.config.trust_dir)
    values = [package(H49, H14.code, args.size) for _ in range(2 * args.count + 10)]
    with NodeClient(H49.amqp_url, H49.code, signer=H49.signer, trust=trust) as sender, \
            NodeClient(H14.amqp_url, H14.code, signer=H14.signer, trust=trust) as receiver:
        for value in values[:10]:  # warm up
            sender.wait_for_receipt(sender.send(value), timeout=60)
        for _ in receiver.deliveries(timeout=30, limit=10):
            pass
        started = time.perf_counter()
        for value in values[10:10 + args.count]:
            sender.send(value)
        confirmed_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        for value in values[10 + args.count:]:
            receipt = sender.wait_for_receipt(sender.send(value), timeout=60)
            assert receipt.kind == "accepted", receipt
        verdict_ms = (time.perf_counter() - started) * 1000
        started, taken = time.perf_counter(), 0
        for _ in receiver.deliveries(timeout=30, limit=2 * args.count):
            taken += 1
        delivered_ms = (time.perf_counter() - started) * 1000
        assert taken == 2 * args.count, taken
    return {
        "sends_per_s_confirmed": per_second(args.count, confirmed_ms),
        "sends_per_s_with_verdict": per_second(args.count, verdict_ms),
        "deliveries_per_s": per_second(taken, delivered_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=24000, help="package bytes (about)")
    parser.add_argument("--sdk", choices=runner.SDK_VERSIONS, default="2.0.1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    problem = runner.toolchain_problem()
    if problem:
        sys.exit(f"cannot run the real SDK: {problem}")
    with tempfile.TemporaryDirectory(prefix="bench-vxp-sdk-") as name:
        tmp = Path(name)
        with running_hub("sqlite", tmp, agencies=("G22", "H41", "H49", "H14"),
                         start=False) as hub:
            log = (tmp / "hub.log").open("wb")
            hub_process = subprocess.Popen(
                [sys.executable, "-m", "vdx_cli.cli", "hub", "run"], env=hub.environment(),
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=ROOT)
            try:
                with running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as world, \
                        serve_http(world.gateway) as endpoint:
                    java = java_phases(args, hub, world, endpoint, tmp)
                python = python_phases(args, hub)
            finally:
                hub_process.terminate()
                try:
                    hub_process.wait(20)
                except subprocess.TimeoutExpired:
                    hub_process.kill()
                log.close()
    ratios = {
        "java sends / python sends (confirmed)":
            round(java["sends_per_s"] / python["sends_per_s_confirmed"], 2),
        "java sends / python sends (with the hub's verdict)":
            round(java["sends_per_s"] / python["sends_per_s_with_verdict"], 2),
        "java list+get+done / python deliveries":
            round(java["list_get_done_per_s"] / python["deliveries_per_s"], 2),
    }
    figures = {"java_sdk": java, "python_sdk": python, "ratios": ratios,
               "machine": {"cpus": os.cpu_count()}}
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
