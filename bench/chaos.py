"""The chaos run: the whole exchange on a three-node RabbitMQ cluster and PostgreSQL while
a broker node, a hub host and the database fail, each at a random moment.

    python bench/chaos.py                       # 10,000 documents, one fault of each kind
    python bench/chaos.py --documents 1000      # the smaller run that .ci/run does
    python bench/chaos.py --json results.json --seed 7

Everything runs on this machine and is its own: a cluster of ``--nodes`` RabbitMQ nodes
(:mod:`bench.cluster`, ports 5701…, never the machine's broker), a PostgreSQL server of its
own in a temporary directory (started from the installed binaries on port 5499, so the
machine's database is never restarted), a TEST PKI, two ``vdx hub run`` processes playing
two hosts (``--hub-id chaos-a``, ``chaos-b``) on the shared database, and agencies on the
Python SDK with every broker address in their URL (comma-separated).

Several senders submit signed documents, paced over about ``--seconds``, each to one of
several recipients, which receive them through the SDK (verified end to end). During the
sending, at random moments (``--seed``):

- **broker**: ``kill -9`` of the broker node that leads the most submit queues, started
  again ``--broker-down`` seconds later;
- **hub**: ``kill -9`` of one hub process and its workers, started again ``--hub-down``
  seconds later (the other keeps serving);
- **database**: PostgreSQL stopped in ``immediate`` mode (a crash: no checkpoint) and
  started again.

Then it waits until every document has its final receipt and every accepted one reached
its recipient (or ``--settle`` seconds pass) and prints: sent, accepted, rejected,
delivered per recipient, duplicate deliveries dropped by their delivery id, **lost (must
be 0)**, the ledger verification, and how long each fault stalled the exchange. Exit
status 1 if anything was lost, the ledger does not verify, or a fault did not recover.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cluster  # noqa: E402
from bench.common import document_of_size  # noqa: E402
from bench.rig import Pki, make_pki  # noqa: E402
from vdx import parse, store  # noqa: E402
from vdx.broker import provision  # noqa: E402
from vdx.client.node import NodeClient  # noqa: E402
from vdx.registry.admin import Admin, HubConfig  # noqa: E402
from vdx.xmldsig.trust import TrustStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_PORT = 5499
FINAL = ("accepted", "rejected", "duplicate")


def say(line: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {line}", err=True)


# ------------------------------------------------------------------------ PostgreSQL


class LocalPostgres:
    """A PostgreSQL server of the run's own, from the installed binaries."""

    def __init__(self, root: Path, port: int = PG_PORT) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise click.ClickException("PostgreSQL's server binaries are not installed "
                                       "(/usr/lib/postgresql/*/bin): apt-get install postgresql")
        self.bin = found[-1].parent
        self.data = root / "pgdata"
        self.port = port

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:  # the server refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise click.ClickException(f"{argv[0]}: {(done.stderr or done.stdout)[-500:]}")

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.data.parent, "postgres", "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.data / "server.log"),
                 "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def crash(self) -> None:
        """Stop in ``immediate`` mode: no checkpoint, recovery from the WAL on start."""
        self.run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        except click.ClickException:
            pass


# ----------------------------------------------------------------------------- hubs


class Hub:
    """``vdx hub run --hub-id NAME`` in its own process group."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, workers: int) -> None:
        self.name, self.env, self.workers = name, env, workers
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vdx_cli.cli", "hub", "run", "--hub-id", self.name,
                 "--workers", str(self.workers)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                cwd=ROOT)

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


# ----------------------------------------------------------------------- the traffic


@dataclass
class Tally:
    """What the senders and recipients saw, with the time of each final receipt."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # sha → (from, doc, to)
    final: dict[str, str] = field(default_factory=dict)  # sha → kind (accepted wins)
    accepted_at: list[float] = field(default_factory=list)
    delivered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    duplicate_deliveries: int = 0
    refused_deliveries: int = 0

    def receipt(self, kind: str, sha: str) -> None:
        if kind not in FINAL:
            return
        with self.lock:
            if self.final.get(sha) != "accepted":
                self.final[sha] = kind
            if kind == "accepted":
                self.accepted_at.append(time.monotonic())

    def delivery(self, recipient: str, document_id: str) -> None:
        with self.lock:
            self.delivered[recipient].add(document_id)

    def missing(self) -> tuple[int, int]:
        """(documents without a final receipt, accepted documents not delivered)."""
        with self.lock:
            unanswered = sum(1 for sha in self.sent if sha not in self.final)
            undelivered = sum(1 for sha, (_s, doc, to) in self.sent.items()
                              if self.final.get(sha) == "accepted"
                              and doc not in self.delivered[to])
        return unanswered, undelivered


class DuplicateCounter(logging.Handler):
    """Counts the SDK's ``duplicate_delivery`` events: deliveries dropped by their id."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.INFO)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event == "duplicate_delivery":
            with self.tally.lock:
                self.tally.duplicate_deliveries += 1
        elif event == "delivery_refused":
            with self.tally.lock:
                self.tally.refused_deliveries += 1


def cluster_url(single: str, nodes: list[cluster.Node]) -> str:
    """A node's one-address URL turned into one address per broker node."""
    parts = urlsplit(single)
    login = parts.netloc.rsplit("@", 1)[0]
    return ",".join(urlunsplit((parts.scheme, f"{login}@127.0.0.1:{n.amqp_port}", parts.path,
                                parts.query, "")) for n in nodes)


def send_documents(client: NodeClient, agency, recipients: list[str], count: int,
                   interval: float, tally: Tally, rng: random.Random) -> None:
    start = time.monotonic()
    for i in range(count):
        to = rng.choice(recipients)
        body = agency.signer.sign(document_of_size(2048, agency.code, (to,)))
        document_id = parse(body).document_id
        submission = client.send(body, wait=False)
        with tally.lock:
            tally.sent[submission.sha256] = (agency.code, document_id, to)
        time.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
    for _ in range(10):  # every message the broker's, whatever failed over meanwhile
        try:
            client.flush(timeout=60)
            return
        except Exception as exc:  # noqa: BLE001 - unconfirmed: the link publishes again
            say(f"{agency.code}: waiting for confirms ({exc})"[:200])
    say(f"{agency.code}: still unconfirmed after 10 minutes; counted as lost if unanswered")


def collect_receipts(client: NodeClient, tally: Tally) -> None:
    for item in client.receipts(timeout=None):
        tally.receipt(item.receipt.kind, item.receipt.package_sha256)


def receive(client: NodeClient, tally: Tally) -> None:
    for delivery in client.deliveries(timeout=None):
        if delivery.kind == "document":
            tally.delivery(client.code, delivery.document_id)


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    kind: str
    at: float = 0.0  # monotonic time of the fault
    back_at: float = 0.0  # when the failed part was started again
    detail: str = ""
    stalled: float | None = None  # seconds from the fault to the next accepted document
    longest_pause: float | None = None  # the longest wait between acceptances after it


def leader_of_submit_queues(nodes: list[cluster.Node]) -> cluster.Node:
    """The broker node leading the most of the hub's submit queues."""
    for node in nodes:
        if not node.running():
            continue
        try:
            queues = cluster.management_get(node, "/api/queues/%2F")
        except OSError:
            continue
        leaders = Counter(q.get("leader") or q.get("node") for q in queues
                          if "submit" in q["name"])
        if leaders:
            name = leaders.most_common(1)[0][0]
            return next(n for n in nodes if n.name == name)
    return nodes[0]


def run_faults(schedule: list[tuple[float, str]], nodes: list[cluster.Node],
               hubs: list[Hub], postgres: LocalPostgres, options: dict,
               faults: list[Fault], rng: random.Random) -> None:
    begin = time.monotonic()
    for offset, kind in schedule:
        time.sleep(max(0.0, begin + offset - time.monotonic()))
        fault = Fault(kind, at=time.monotonic())
        if kind == "broker":
            node = leader_of_submit_queues(nodes)
            fault.detail = f"kill -9 {node.name} (leads the submit queues)"
            say(f"fault: {fault.detail}")
            node.kill()
            time.sleep(options["broker_down"])
            node.start()
        elif kind == "hub":
            hub = rng.choice(hubs)
            fault.detail = f"kill -9 hub {hub.name}"
            say(f"fault: {fault.detail}")
            hub.kill()
            time.sleep(options["hub_down"])
            hub.start()
        else:
            fault.detail = "PostgreSQL stopped in immediate mode, then started"
            say(f"fault: {fault.detail}")
            postgres.crash()
            time.sleep(options["db_down"])
            postgres.start()
        fault.back_at = time.monotonic()
        say(f"fault {kind}: back after {fault.back_at - fault.at:.1f} s")
        faults.append(fault)


def fault_gap(options: dict) -> float:
    """Seconds between two faults: the longest outage and time to see the recovery."""
    return max(options["broker_down"], options["hub_down"], options["db_down"]) + 12


def fault_times(seconds: float, count: int, gap: float, rng: random.Random) -> list[float]:
    """One random moment per fault, all inside the sending (10 %…80 % of it) and at least
    ``gap`` apart: each in its own slice of that window."""
    width = 0.7 * seconds / count
    if width < gap:
        raise click.UsageError(f"{count} faults {gap:.0f} s apart need --seconds of at "
                               f"least {count * gap / 0.7:.0f}")
    return [0.1 * seconds + i * width + rng.uniform(0, width - gap) for i in range(count)]


def stall_after(fault: Fault, accepted_at: list[float]) -> float | None:
    later = [t for t in accepted_at if t > fault.at]
    return (min(later) - fault.at) if later else None


def longest_pause(fault: Fault, accepted_at: list[float], until: float) -> float | None:
    """The longest time without any acceptance from the fault to ``until`` (30 s after
    the failed part came back, or the next fault): how long the exchange stood still."""
    end = until
    times = sorted(t for t in accepted_at if fault.at < t <= end)
    if not times:
        return None
    return max(b - a for a, b in zip([fault.at, *times], times, strict=False))


# ----------------------------------------------------------------------------- main


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--documents", type=click.IntRange(10), default=10_000, show_default=True)
@click.option("--senders", type=click.IntRange(1, 20), default=4, show_default=True)
@click.option("--recipients", type=click.IntRange(1, 20), default=4, show_default=True)
@click.option("--seconds", type=click.FloatRange(10), default=None,
              help="Spread the sending over this long [default: documents ÷ 60, and long "
                   "enough for three faults apart].")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Workers per hub process (two hub processes).")
@click.option("--broker-down", type=float, default=8.0, show_default=True)
@click.option("--hub-down", type=float, default=3.0, show_default=True)
@click.option("--db-down", type=float, default=3.0, show_default=True)
@click.option("--settle", type=float, default=600.0, show_default=True,
              help="Seconds to wait, after the sending, for everything to arrive.")
@click.option("--seed", type=int, default=None, help="For the fault times and recipients.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option("--keep", is_flag=True, help="Leave the cluster and database running.")
def main(documents, senders, recipients, seconds, nodes, workers, broker_down, hub_down,
         db_down, settle, seed, json_out, keep) -> None:
    """Run the exchange on a RabbitMQ cluster through a broker, hub and database crash."""
    seed = seed if seed is not None else secrets.randbelow(10**6)
    rng = random.Random(seed)
    options = {"broker_down": broker_down, "hub_down": hub_down, "db_down": db_down}
    seconds = seconds or max(documents / 60, 3 * fault_gap(options) / 0.7 + 10)
    fault_times(seconds, 3, fault_gap(options), random.Random())  # too short: fails here
    root = Path(f"/tmp/vdx-chaos-{secrets.token_hex(3)}")
    root.mkdir(mode=0o755)
    say(f"chaos run in {root}, seed {seed}: {documents} documents over {seconds:.0f} s")
    postgres = LocalPostgres(root / "pg")
    hubs: list[Hub] = []
    clients: list[NodeClient] = []
    cluster_root = root / "cluster"
    try:
        the_nodes = cluster.start_cluster(cluster_root, nodes, say=say)
        postgres.init()
        result = exchange(root, the_nodes, postgres, hubs, clients, rng, documents=documents,
                          senders=senders, recipients=recipients, seconds=seconds,
                          workers=workers, settle=settle, options=options)
    finally:
        for client in clients:
            client.stop()
        for client in clients:
            client.close(timeout=2)
        for hub in hubs:
            hub.stop()
        if not keep:
            postgres.stop()
            cluster.stop_cluster(cluster_root)
            shutil.rmtree(root, ignore_errors=True)
    result["seed"] = seed
    report(result)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2))
    if result["lost"] or not result["ledger"].get("intact") or \
            any(f["stalled_s"] is None for f in result["faults"]):
        sys.exit(1)


def exchange(root: Path, nodes: list[cluster.Node], postgres: LocalPostgres, hubs: list[Hub],
             clients: list[NodeClient], rng: random.Random, *, documents: int, senders: int,
             recipients: int, seconds: float, workers: int, settle: float,
             options: dict) -> dict:
    amqp = ",".join(n.amqp_url for n in nodes)
    env = os.environ | {
        "VDX_AMQP_URL": amqp, "VDX_MANAGEMENT_URL": ",".join(n.management_url for n in nodes),
        "VDX_DATABASE_URL": postgres.url, "VDX_HOME": str(root / "home"),
        "VDX_PKI_DIR": str(root / "pki"), "VDX_TRUST_DIR": str(root / "pki"),
        "VDX_ACTOR": "chaos"}
    os.environ.update(env)  # for provisioning in this process
    the_pki: Pki = make_pki(root / "pki", tuple(f"H{i + 10:02d}"
                                                 for i in range(senders + recipients)),
                            ec_agencies=True)
    engine = store.make_engine(postgres.url)
    store.migrate(engine)
    settings = provision.BrokerSettings.from_env()
    api = provision.ManagementApi(settings)
    provision.ensure_topology(api, settings.vhost)
    admin = Admin(HubConfig(postgres.url, settings, root / "pki", root / "pki", "chaos"),
                  engine=engine, api=api)
    logins = {}
    for agency in the_pki.agencies:
        _node, credentials = admin.register(agency.code, f"Cơ quan {agency.code}", agency.pem)
        logins[agency.code] = cluster_url(credentials.amqp_url, nodes)
    engine.dispose()
    for name in ("chaos-a", "chaos-b"):
        hub = Hub(name, env, root, workers)
        hub.start()
        hubs.append(hub)

    tally = Tally()
    logging.getLogger("vdx").addHandler(DuplicateCounter(tally))
    logging.getLogger("vdx").setLevel(logging.INFO)
    trust = TrustStore.from_dir(root / "pki")
    sending, receiving = the_pki.agencies[:senders], the_pki.agencies[senders:]
    recipient_codes = [a.code for a in receiving]
    threads: list[threading.Thread] = []

    def thread(target: Callable, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        threads.append(t)

    for agency in receiving:
        client = NodeClient(logins[agency.code], agency.code, signer=agency.signer,
                            trust=trust, auto_arrival=False)
        clients.append(client)
        thread(receive, client, tally)
    per_sender = [documents // senders + (1 if i < documents % senders else 0)
                  for i in range(senders)]
    senders_threads = []
    for agency, count in zip(sending, per_sender, strict=True):
        client = NodeClient(logins[agency.code], agency.code, signer=agency.signer)
        clients.append(client)
        thread(collect_receipts, client, tally)
        t = threading.Thread(target=send_documents, daemon=True,
                             args=(client, agency, recipient_codes, count,
                                   seconds * senders / documents * 1.0, tally,
                                   random.Random(rng.random())))
        t.start()
        senders_threads.append(t)

    kinds = ["broker", "hub", "database"]
    rng.shuffle(kinds)
    slots = fault_times(seconds, len(kinds), fault_gap(options), rng)
    faults: list[Fault] = []
    started = time.monotonic()
    fault_thread = threading.Thread(target=run_faults, daemon=True, args=(
        list(zip(slots, kinds, strict=True)), nodes, hubs, postgres, options, faults, rng))
    fault_thread.start()
    for t in senders_threads:
        t.join()
    fault_thread.join()
    sent_for = time.monotonic() - started
    say(f"sent {len(tally.sent)} documents in {sent_for:.0f} s; settling")
    deadline = time.monotonic() + settle
    last_report = 0.0
    while time.monotonic() < deadline:
        unanswered, undelivered = tally.missing()
        if unanswered == 0 and undelivered == 0:
            break
        if time.monotonic() - last_report > 10:
            say(f"waiting: {unanswered} without a final receipt, {undelivered} not delivered")
            last_report = time.monotonic()
        time.sleep(0.5)
    unanswered, undelivered = tally.missing()
    with tally.lock:
        for fault, after in zip(faults, [*faults[1:], None], strict=True):
            fault.stalled = stall_after(fault, tally.accepted_at)
            until = fault.back_at + 30 if after is None else min(fault.back_at + 30, after.at)
            fault.longest_pause = longest_pause(fault, tally.accepted_at, until)
        kinds_count = Counter(tally.final.values())
        result = {
            "documents": documents, "sent": len(tally.sent),
            "accepted": kinds_count["accepted"], "rejected": kinds_count["rejected"],
            "duplicate_receipts": kinds_count["duplicate"],
            "delivered": {code: len(tally.delivered[code]) for code in recipient_codes},
            "expected": dict(Counter(to for sha, (_s, _d, to) in tally.sent.items()
                                     if tally.final.get(sha) == "accepted")),
            "duplicate_deliveries_dropped": tally.duplicate_deliveries,
            "refused_deliveries": tally.refused_deliveries,
            "unanswered": unanswered, "undelivered": undelivered,
            "lost": unanswered + undelivered,
            "sending_seconds": round(sent_for, 1),
            "settled_seconds": round(time.monotonic() - started - sent_for, 1),
            "faults": [{"kind": f.kind, "detail": f.detail,
                        "at_s": round(f.at - started, 1),
                        "down_s": round(f.back_at - f.at, 1),
                        "stalled_s": None if f.stalled is None else round(f.stalled, 2),
                        "longest_pause_s": None if f.longest_pause is None
                        else round(f.longest_pause, 2)}
                       for f in faults],
        }
    result["ledger"] = verify_ledger(env)
    return result


def verify_ledger(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "vdx_cli.cli", "audit", "verify", "--json"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"intact": False, "error": (done.stderr or done.stdout)[-500:]}


def report(result: dict) -> None:
    click.echo(f"seed {result['seed']}")
    click.echo(f"sent        {result['sent']:>7,}")
    click.echo(f"accepted    {result['accepted']:>7,}")
    click.echo(f"rejected    {result['rejected']:>7,}")
    for code, count in sorted(result["delivered"].items()):
        click.echo(f"delivered   {count:>7,}  to {code} (of {result['expected'].get(code, 0):,})")
    click.echo(f"duplicate deliveries dropped by delivery id: "
               f"{result['duplicate_deliveries_dropped']:,}")
    click.echo(f"lost        {result['lost']:>7,}  ({result['unanswered']} without a final "
               f"receipt, {result['undelivered']} accepted but not delivered)")
    ledger = result["ledger"]
    click.echo(f"ledger      {'intact' if ledger.get('intact') else 'NOT INTACT'} "
               f"({ledger.get('entries', '?')} entries)")
    for fault in result["faults"]:
        stalled = "never recovered" if fault["stalled_s"] is None else \
            f"next document accepted {fault['stalled_s']} s after the fault, longest " \
            f"pause {fault['longest_pause_s']} s"
        click.echo(f"fault at {fault['at_s']:>6} s: {fault['detail']}; down "
                   f"{fault['down_s']} s; {stalled}")


if __name__ == "__main__":
    main()
