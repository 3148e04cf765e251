"""A RabbitMQ cluster of several nodes on this one machine, from the installed RabbitMQ.

Each node has its own name (``vdxc1@localhost``, …), AMQP, distribution and management
ports, data and log directories and Erlang cookie, all under one directory (by default
``/tmp/vdx-cluster``), so the machine's own broker (``rabbit@HOST`` on 5672) is never
touched. No Docker, nothing downloaded: the nodes run the installed
``/usr/lib/rabbitmq/bin/rabbitmq-server`` directly.

    python bench/cluster.py start [--nodes 3]   # start, join, print the addresses
    python bench/cluster.py status [--json]
    python bench/cluster.py kill N              # kill -9 node N (a crash, for chaos)
    python bench/cluster.py restart N           # start node N again (it rejoins)
    python bench/cluster.py stop                # stop every node, remove the directory

``start`` prints the comma-separated ``VDX_AMQP_URL`` that every connecting program takes
and the management URLs (``VDX_MANAGEMENT_URL``); ``--json`` gives them to a script.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import click

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
DEFAULT_DIR = Path("/tmp/vdx-cluster")
COOKIE = "VDXBENCHCLUSTERCOOKIE"  # the bench cluster's own: never the machine broker's
AMQP_BASE, DIST_BASE, MANAGEMENT_BASE = 5700, 25700, 15700


@dataclass(frozen=True)
class Node:
    """Node ``index`` (1-based) of the cluster rooted at ``root``."""

    root: Path
    index: int

    @property
    def name(self) -> str:
        return f"vdxc{self.index}@localhost"

    @property
    def home(self) -> Path:
        return self.root / f"node{self.index}"

    @property
    def amqp_port(self) -> int:
        return AMQP_BASE + self.index

    @property
    def management_port(self) -> int:
        return MANAGEMENT_BASE + self.index

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    def env(self) -> dict[str, str]:
        home = self.home
        return {**os.environ,
                "HOME": str(home),  # where the Erlang cookie is read from
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(DIST_BASE + self.index),
                "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
                "RABBITMQ_LOG_BASE": str(home / "log"),
                "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(self.pid_file)}

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(COOKIE)
            cookie.chmod(0o400)
        (self.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.amqp_port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n")
        (self.home / "enabled_plugins").write_text("[rabbitmq_management].\n")

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
                              env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise click.ClickException(f"rabbitmqctl {' '.join(args)} on {self.name}: "
                                       f"{(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def start(self) -> None:
        self.prepare()
        subprocess.run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self.env(),
                       capture_output=True, timeout=60)
        self.await_startup()
        wait_for_management(self)

    def await_startup(self, timeout: float = 120) -> None:
        """Wait until the node runs: ``await_startup`` gives up at once while a node that
        was just launched has not registered with epmd yet, so it is asked again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "30", timeout=45)
                return
            except click.ClickException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """``kill -9`` the node's Erlang VM: a crash, not a shutdown."""
        pid = self.pid()
        if pid is not None and self.running():
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not self.running():
                    return
                time.sleep(0.05)


def management_get(node: Node, path: str) -> object:
    request = urllib.request.Request(
        node.management_url + path,
        headers={"Authorization": "Basic " + b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def wait_for_management(node: Node, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            management_get(node, "/api/overview")
            return
        except (OSError, urllib.error.URLError, ValueError):
            if time.monotonic() > deadline:
                raise click.ClickException(f"{node.name}: the management API on port "
                                           f"{node.management_port} never answered") from None
            time.sleep(0.5)


def nodes_of(root: Path) -> list[Node]:
    found = sorted(int(p.name[4:]) for p in root.glob("node*") if p.name[4:].isdigit())
    return [Node(root, i) for i in found]


def running_nodes(node: Node) -> list[str]:
    """The cluster's running nodes, as ``node`` sees them."""
    return [n["name"] for n in management_get(node, "/api/nodes") if n.get("running")]


def describe(root: Path) -> dict:
    nodes = nodes_of(root)
    up = [n for n in nodes if n.running()]
    members: list[str] = []
    for n in up:
        try:
            members = running_nodes(n)
            break
        except (OSError, urllib.error.URLError, ValueError):
            continue
    return {"dir": str(root),
            "nodes": [{"name": n.name, "running": n.running(), "amqp_port": n.amqp_port,
                       "management_port": n.management_port, "pid": n.pid()} for n in nodes],
            "cluster_running": members,
            "amqp_url": ",".join(n.amqp_url for n in nodes),
            "management_url": ",".join(n.management_url for n in nodes)}


def print_description(info: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for n in info["nodes"]:
        state = "running" if n["running"] else "down"
        click.echo(f"{n['name']:<18} {state:<8} amqp {n['amqp_port']}  "
                   f"management {n['management_port']}")
    click.echo(f"cluster (running): {', '.join(info['cluster_running']) or '—'}")
    click.echo(f"export VDX_AMQP_URL='{info['amqp_url']}'")
    click.echo(f"export VDX_MANAGEMENT_URL='{info['management_url']}'")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dir", "root", type=click.Path(path_type=Path), default=DEFAULT_DIR,
              show_default=True, help="Where the nodes keep their data, logs and cookie.")
@click.pass_context
def main(ctx: click.Context, root: Path) -> None:
    """A local RabbitMQ cluster for the cluster and chaos benchmarks."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        raise click.ClickException(f"RabbitMQ is not installed ({RABBIT_BIN} is missing): "
                                   f"apt-get install rabbitmq-server")
    ctx.obj = root


def start_cluster(root: Path, count: int, say=lambda line: None) -> list[Node]:
    """Start ``count`` fresh nodes under ``root`` and join them into one cluster."""
    if any(n.running() for n in nodes_of(root)):
        raise click.ClickException(f"a cluster is already running in {root}: "
                                   f"`python bench/cluster.py stop` first")
    shutil.rmtree(root, ignore_errors=True)
    nodes = [Node(root, i) for i in range(1, count + 1)]
    for node in nodes:
        say(f"starting {node.name} …")
        node.start()
    for node in nodes[1:]:
        say(f"joining {node.name} to {nodes[0].name} …")
        node.ctl("stop_app")
        node.ctl("reset")
        node.ctl("join_cluster", nodes[0].name)
        node.ctl("start_app")
        node.await_startup()
        wait_for_management(node)
    members = running_nodes(nodes[0])
    if sorted(members) != sorted(n.name for n in nodes):
        raise click.ClickException(f"the cluster has {members}, not all {count} nodes")
    return nodes


def stop_cluster(root: Path, keep: bool = False) -> None:
    """Stop every node under ``root`` (killing any that does not stop)."""
    for node in nodes_of(root):
        if node.running():
            node.ctl("stop", check=False, timeout=60)
            node.kill()
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


@main.command()
@click.option("--nodes", "count", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the addresses as JSON.")
@click.pass_obj
def start(root: Path, count: int, as_json: bool) -> None:
    """Start COUNT nodes and join them into one cluster."""
    start_cluster(root, count, say=lambda line: click.echo(line, err=True))
    print_description(describe(root), as_json)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(root: Path, as_json: bool) -> None:
    """Which nodes run, and the addresses to connect to."""
    print_description(describe(root), as_json)


def node_arg(root: Path, index: int) -> Node:
    node = Node(root, index)
    if not node.home.exists():
        raise click.ClickException(f"there is no node {index} in {root}")
    return node


@main.command()
@click.argument("index", type=int)
@click.pass_obj
def kill(root: Path, index: int) -> None:
    """kill -9 node INDEX."""
    node = node_arg(root, index)
    node.kill()
    click.echo(f"killed {node.name}")


@main.command()
@click.argument("index", type=int)
@click.pass_obj
def restart(root: Path, index: int) -> None:
    """Start node INDEX again; it rejoins the cluster it belonged to."""
    node = node_arg(root, index)
    if node.running():
        raise click.ClickException(f"{node.name} is running")
    node.start()
    click.echo(f"restarted {node.name}")


@main.command()
@click.option("--keep", is_flag=True, help="Keep the data directory.")
@click.pass_obj
def stop(root: Path, keep: bool) -> None:
    """Stop every node (killing any that does not stop) and remove the directory."""
    stop_cluster(root, keep)
    click.echo(f"stopped the cluster in {root}")


if __name__ == "__main__":
    sys.exit(main())
