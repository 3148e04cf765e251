"""One agency cannot starve the others: another node's latency while one node floods.

    python bench/bench_fairness.py [--flood 3000] [--lone 50] [--workers 2]
                                   [--database sqlite|postgresql] [--json FILE]

On a fresh vhost and database (``bench/rig.py``) with four agencies registered, served by
``vdx hub run --workers N`` as a subprocess:

1. **unloaded**: node B sends ``--lone`` documents to node C one at a time, each after the
   previous one reached C's inbox; submit-to-inbox latency p50/p99;
2. **loaded**: node A publishes ``--flood`` signed documents (to node D) as fast as it
   can, then B sends its lone documents as in 1 while the hub works through A's backlog;
   the backlog left in A's submit queue when B's last document arrived shows the two
   overlapped;
3. the ratio loaded/unloaded p99 (target at most 2×), and the time the hub took to
   accept the whole flood.

Every package is made and signed before any timing (RSA-2048 agency keys, as the
official PKI's). Prints the figures and writes them as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig  # noqa: E402
from bench.run import Packages, percentile  # noqa: E402
from vdx.broker import provision  # noqa: E402

TARGET_RATIO = 2.0
PREFIXES = ("A01", "B02", "C03", "D04")


class Node:
    """One agency's broker session: publish as it, read its inbox."""

    def __init__(self, url: str, code: str) -> None:
        self.code = code
        self.user = pika.URLParameters(url).credentials.username
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

    def publish(self, body: bytes, message_id: str) -> None:
        self.channel.basic_publish(
            provision.SUBMIT_EXCHANGE, self.code, body,
            pika.BasicProperties(delivery_mode=2, user_id=self.user, message_id=message_id))

    def next_delivery(self, timeout: float = 60.0) -> dict:
        for method, props, _body in self.channel.consume(
                provision.inbox_queue(self.code), inactivity_timeout=timeout):
            if method is None:
                raise RuntimeError(f"nothing reached {self.code} within {timeout} s")
            self.channel.basic_ack(method.delivery_tag)
            if props.type != "vdx.receipt":
                return dict(props.headers or {})
        raise RuntimeError("the consumer ended")

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def lone_latencies(sender: Node, recipient: Node, packages) -> list[float]:
    """Milliseconds from each publish to its delivery, one package at a time."""
    out = []
    for package in packages:
        started = time.perf_counter()
        sender.publish(package.body, package.document_id)
        headers = recipient.next_delivery()
        out.append((time.perf_counter() - started) * 1000)
        assert headers.get("x-vdx-document-id") == package.document_id, headers
    return out


def backlog(site: rig.Site, code: str) -> int:
    """Messages waiting in ``code``'s submit queue, exactly (a passive declare)."""
    connection = pika.BlockingConnection(pika.URLParameters(site.amqp_url))
    try:
        ok = connection.channel().queue_declare(provision.submit_queue(code), passive=True)
        return ok.method.message_count
    finally:
        connection.close()


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 1), "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1)}


def run(args: argparse.Namespace) -> dict:
    tmp = rig.temp_dir()
    the_pki = rig.make_pki(tmp / "pki", PREFIXES, ec_agencies=False)
    a, b, c, d = the_pki.agencies
    print(f"signing {args.flood} + {2 * args.lone + 3} packages …", flush=True)
    flood = Packages(a, [d.code], 3000).make(args.flood)
    lone_maker = Packages(b, [c.code], 3000)
    warmup, unloaded_set, loaded_set = (lone_maker.make(3), lone_maker.make(args.lone),
                                        lone_maker.make(args.lone))
    with rig.site(args.database, tmp, the_pki) as site:
        hub = rig.HubProcess(site, tmp, args.workers, args.prefetch)
        hub.wait_ready()
        sender, recipient = Node(site.logins[b.code], b.code), Node(site.logins[c.code], c.code)
        flooder, sink = Node(site.logins[a.code], a.code), Node(site.logins[d.code], d.code)
        try:
            lone_latencies(sender, recipient, warmup)
            unloaded = lone_latencies(sender, recipient, unloaded_set)
            started = time.perf_counter()
            for package in flood:
                flooder.publish(package.body, package.document_id)
            published = time.perf_counter() - started
            queued_at_start = backlog(site, a.code)
            loaded = lone_latencies(sender, recipient, loaded_set)
            queued_at_end = backlog(site, a.code)
            for _ in range(args.flood):  # the whole flood delivered
                sink.next_delivery(timeout=300)
            flood_seconds = time.perf_counter() - started
        finally:
            for node in (sender, recipient, flooder, sink):
                node.close()
            hub.stop()
    ratio = percentile(loaded, 99) / percentile(unloaded, 99)
    return {
        "workers": args.workers, "database": args.database, "flood": args.flood,
        "lone": args.lone, "unloaded": summary(unloaded), "loaded": summary(loaded),
        "p99_ratio": round(ratio, 2), "target_ratio": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "flood_published_s": round(published, 2),
        "flood_backlog_when_loaded_phase_began": queued_at_start,
        "flood_backlog_when_loaded_phase_ended": queued_at_end,
        "flood_delivered_s": round(flood_seconds, 2),
        "flood_per_s": round(args.flood / flood_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--lone", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rig.install_signal_handlers()
    try:
        result = run(args)
    finally:
        rig.CLEANUP.run_all()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
