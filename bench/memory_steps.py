"""Where a hub worker's memory goes for one large package, step by step.

    python bench/memory_steps.py [--size 20MiB] [--database sqlite|postgresql] [--consume]

Runs, in a fresh process, what a worker does to one submitted package (the same calls as
``vdx.hub.plan.Planner.decide`` → ``vdx.hub.pipeline.admit`` → ``Planner.plan_accept`` →
``vdx.hub.worker.HubWorker._write``, without the broker): hardened parse, schema,
signature, reading the package, routing, the planned rows and signed receipts, the
journal transaction (SQLite file or a PostgreSQL schema), then the AMQP frames pika
would queue. The allocator is tuned as in a worker (``vdx.malloc.tune``). Not measured
here: the frames the body arrives in (pika joins them into the body; they are freed and
given back at once, ``vdx.malloc.trim``).
For each step it prints the peak resident memory reached during the step and what stays
resident after it, both over the baseline taken with the package bytes already in memory
(the worker receives them from pika), in MiB and as a multiple of the package size.
Peaks come from ``VmHWM`` (reset before each step through ``/proc/self/clear_refs``).

``--consume`` verifies with ``Verifier.verify(tree, ..., consume=True)`` (the verifier
may take the tree apart instead of copying its signed part) instead of the worker's
``RegistryView.verify``, to show what handing the tree over saves.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig  # noqa: E402
from bench.run import MIB, Packages, parse_size  # noqa: E402


def kib(field: str) -> int:
    import os
    return rig.status_kib(os.getpid(), field)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=parse_size, default=parse_size("20MiB"))
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--consume", action="store_true",
                    help="verify with consume=True (no copy of the signed content)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    try:
        tmp = rig.temp_dir()
        the_pki = rig.make_pki(tmp / "pki", ("G22", "H41"), ec_agencies=False)
        sender, recipient = the_pki.agencies
        # made here, measured in a fresh process: building and signing 20 MiB leaves this
        # process's heap large enough to hide the steps' allocations
        (tmp / "big.edxml").write_bytes(
            Packages(sender, [recipient.code], args.size).make(1)[0].body)
        (tmp / "small.edxml").write_bytes(
            Packages(sender, [recipient.code], 10_000).make(1)[0].body)
        with rig.site(args.database, tmp, the_pki) as the_site:
            config = {"database_url": the_site.database.url, "pki": str(the_pki.path),
                      "sender": sender.code, "recipient": recipient.code,
                      "big": str(tmp / "big.edxml"), "small": str(tmp / "small.edxml"),
                      "backend": args.database, "consume": args.consume}
            return subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                                  env=the_site.environment(tmp)).returncode
    finally:
        rig.CLEANUP.run_all()


def child(c: dict) -> int:
    import os

    from pika import spec
    from pika.frame import Body, Header, Method
    from sqlalchemy.orm import sessionmaker

    from vdx import malloc, store
    from vdx.broker.wire import Incoming
    from vdx.core.xmlsafe import ParseLimits
    from vdx.hub import pipeline
    from vdx.hub.plan import Plan, Planner
    from vdx.hub.supervisor import load_services
    from vdx.hub.worker import HubWorker, WorkerConfig
    from vdx.registry import nodes as registry
    from vdx.registry.admin import HubConfig

    malloc.tune()  # as vdx.hub.supervisor.run_worker does for a worker
    services = load_services(HubConfig.from_env())
    engine = store.make_engine(c["database_url"])
    sessions = sessionmaker(engine)
    limits = ParseLimits()
    sender = c["sender"]
    # everything imported and warmed on a small package first
    small = Path(c["small"]).read_bytes()
    with sessions() as session:
        view = services.view(session)
        user = view.account_of(sender)  # the broker account the node publishes under
        pipeline.admit(small, user, limits=limits, verify=view.verify, directory=view)
    body = Path(c["big"]).read_bytes()  # what pika hands the worker
    size = len(body)
    gc.collect()
    pid = os.getpid()
    base = kib("VmRSS")
    rows = []
    state: dict = {}

    def step(name: str, fn) -> None:
        gc.collect()
        rig.reset_peak(pid)
        fn()
        peak = kib("VmHWM") - base
        gc.collect()
        kept = kib("VmRSS") - base
        rows.append((name, peak * 1024, kept * 1024))

    session = sessions()
    view = services.view(session)
    verify = view.verify
    if c["consume"]:
        def verify(tree, sender):  # noqa: ANN001, ANN202
            return view.verifier.verify(tree, sender, registry.registered_lookup(session),
                                        consume=True).signed_tree
    step("hardened_parse", lambda: state.update(tree=pipeline.hardened_parse(body, limits)))
    step("check_schema", lambda: pipeline.check_schema(state["tree"]))
    step("verify_signature", lambda: state.update(
        signed=pipeline.verify_signature(state["tree"], verify)))
    step("read_package", lambda: state.update(package=pipeline.read_package(state["signed"])))
    step("route (end of admit; the trees dropped)", lambda: (
        state.update(admitted=pipeline.Admitted(
            state["package"], pipeline.authorise(state["package"], user, view),
            hashlib.sha256(body).hexdigest(), size)),
        state.pop("tree"), state.pop("signed")))
    session.close()  # the read-only part is over, as in the worker
    worker = HubWorker(WorkerConfig(hub_id="memory-steps", amqp_url="amqp://unused"),
                       sessions, services)
    planner = Planner("memory-steps", limits, services.make_receipt)
    message = Incoming(tag=1, body=body, user_id=user, message_id="m1", redelivered=False)

    def plan() -> None:
        state["plan"] = Plan()
        planner.plan_accept(state["plan"], message, state["admitted"])

    def write() -> None:
        with sessions.begin() as writing:
            state["published"] = worker._write(writing, state["plan"])

    step("plan: rows, receipts signed (Planner.plan_accept)", plan)
    step("write: one transaction, committed (HubWorker._write)", write)

    def frames() -> None:
        # what pika's Channel.basic_publish → Connection._send_message queues: the
        # marshalled frames, one bytes object each, until the socket takes them
        _token, out = state["published"][0]
        props = spec.BasicProperties(delivery_mode=2, message_id=out.message_id,
                                     headers=out.headers)
        queued = [Method(1, spec.Basic.Publish(exchange=out.exchange,
                                               routing_key=out.routing_key)).marshal(),
                  Header(1, len(out.body), props).marshal()]
        frame_max = 131072 - 8
        for i in range(0, len(out.body), frame_max):
            queued.append(Body(1, out.body[i:i + frame_max]).marshal())
        state["queued"] = queued

    step("publish: AMQP frames queued", frames)
    engine.dispose()
    print(f"package {size:,} bytes; baseline RSS {base / 1024:,.0f} MiB with the package "
          f"bytes in memory ({c['backend']}{', consume=True' if c['consume'] else ''})")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'step':<{width}} {'peak over baseline':>22} {'resident after':>22}")
    for name, peak, kept in rows:
        print(f"{name:<{width}} {peak / MIB:>10,.1f} MiB {peak / size:>6.1f} x "
              f"{kept / MIB:>10,.1f} MiB {kept / size:>6.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
