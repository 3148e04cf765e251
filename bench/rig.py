"""The benchmark's real hub: PKI, agencies, a fresh vhost and database, `vdx hub run`.

Everything the benchmark creates is registered with :data:`CLEANUP` as soon as it exists
and undone in reverse order when the run ends, however it ends (normal exit, exception,
Ctrl-C, SIGTERM): hub process groups are killed, RabbitMQ vhosts are deleted with every
user that had permissions in them, PostgreSQL schemas are dropped, temporary directories
removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, text

from vdx import store
from vdx.broker import provision
from vdx.registry.admin import Admin, HubConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("VDX_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HUB_ID = "bench-hub"


# --------------------------------------------------------------------------- cleanup


class Cleanup:
    """A stack of undo actions, run once, last registered first."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> Callable[[], None]:
        entry = (what, action)
        self._actions.append(entry)

        def run_now() -> None:
            if entry in self._actions:
                self._actions.remove(entry)
                _quietly(what, action)
        return run_now

    def run_all(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            _quietly(what, action)


def _quietly(what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - cleanup goes on with the rest
        print(f"  cleanup: {what} failed: {exc}", file=sys.stderr)


CLEANUP = Cleanup()


def install_signal_handlers() -> None:
    """SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt, so `finally` blocks and CLEANUP run
    (SIGINT explicitly: a shell starts background jobs with it ignored)."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def temp_dir() -> Path:
    path = Path(f"/tmp/vdx-bench-{secrets.token_hex(4)}")
    path.mkdir(mode=0o700)
    CLEANUP.push(f"remove {path}", lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# ------------------------------------------------------------------------------- PKI


@dataclass
class Agency:
    code: str
    signer: Signer
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    path: Path
    agencies: list[Agency]


def make_pki(path: Path, prefixes: tuple[str, ...], *, ec_agencies: bool) -> Pki:
    """A TEST root (ECDSA), the hub's certificate (ECDSA, as `vdx init` issues it) and one
    signing key per agency (RSA-2048 unless ``ec_agencies``), with codes no one else uses
    (broker users are global)."""
    pki.init_ca(path, ec_key=True)
    pki.issue_hub(path, ec_key=True)
    ca_key, ca_cert = pki.CaDir(path).load_root()
    tag = secrets.token_hex(3).upper()
    agencies = []
    for prefix in prefixes:
        code = f"{prefix}.B{tag}"
        key, cert = pki.issue_agency_certificate(ca_key, ca_cert, code, f"Cơ quan {prefix}",
                                                 ec_key=ec_agencies)
        agencies.append(Agency(code, Signer(key, cert), cert))
    return Pki(path, agencies)


# ---------------------------------------------------------------------------- broker


def broker_api(vhost: str = "/") -> provision.ManagementApi:
    s = provision.BrokerSettings.from_env()
    return provision.ManagementApi(provision.BrokerSettings(
        s.api_url, s.user, s.password, vhost, s.amqp_host, s.amqp_port), timeout=10)


def admin_amqp_url(vhost: str) -> str:
    s = provision.BrokerSettings.from_env()
    return (f"amqp://{quote(s.user, safe='')}:{quote(s.password, safe='')}@{s.amqp_host}:"
            f"{s.amqp_port}/{quote(vhost, safe='')}")


@contextmanager
def temp_vhost(topology: bool = True) -> Iterator[tuple[provision.ManagementApi, str]]:
    """A new vhost (with the hub topology), deleted afterwards with its users."""
    vhost = f"vdx-bench-{secrets.token_hex(4)}"
    api = broker_api(vhost)

    def remove_once() -> None:
        for perm in api.get(f"vhosts/{quote(vhost, safe='')}/permissions") or ():
            if perm["user"] != api.settings.user:
                api.delete(f"users/{quote(perm['user'], safe='')}")
        api.delete(f"vhosts/{quote(vhost, safe='')}")

    def remove() -> None:
        # the broker may be restarting (other test suites restart it): keep trying a while
        deadline = time.monotonic() + 90
        while True:
            try:
                return remove_once()
            except provision.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)

    provision.ensure_vhost(api, vhost)
    undo = CLEANUP.push(f"delete vhost {vhost}", remove)
    try:
        if topology:
            provision.ensure_topology(api, vhost)
        yield api, vhost
    finally:
        undo()


def queue_info(api: provision.ManagementApi, vhost: str, queue: str) -> dict:
    return api.get(f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}") or {}


# -------------------------------------------------------------------------- database


@dataclass
class Database:
    backend: str
    url: str  # what `vdx hub run` gets in VDX_DATABASE_URL
    engine: Engine


@contextmanager
def temp_database(backend: str, tmp: Path) -> Iterator[Database]:
    """A migrated, empty database: a SQLite file, or a schema of its own in PostgreSQL
    database ``test`` (selected with ``search_path`` in the URL), dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'hub-{secrets.token_hex(3)}.db'}"
        engine = store.make_engine(url)
        try:
            store.migrate(engine)
            yield Database(backend, url, engine)
        finally:
            engine.dispose()
        return
    schema = f"vdx_bench_{secrets.token_hex(4)}"
    admin = store.make_engine(POSTGRES_URL)

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    undo = CLEANUP.push(f"drop schema {schema}", drop)
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = store.make_engine(url)
    try:
        store.migrate(engine)
        yield Database(backend, url, engine)
    finally:
        engine.dispose()
        undo()


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    engine = store.make_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: not available
        return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    finally:
        engine.dispose()


def postgres_version() -> str | None:
    engine = store.make_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SHOW server_version")).scalar()
    except Exception:  # noqa: BLE001
        return None
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- hub


@dataclass
class Site:
    """One configuration's hub: vhost, database, registered agencies and their logins."""

    vhost: str
    api: provision.ManagementApi
    database: Database
    config: HubConfig
    logins: dict[str, str]  # agency code -> its own AMQP URL

    @property
    def amqp_url(self) -> str:
        return admin_amqp_url(self.vhost)

    def environment(self, tmp: Path) -> dict[str, str]:
        return os.environ | {
            "VDX_DATABASE_URL": self.database.url, "VDX_AMQP_URL": self.amqp_url,
            "VDX_PKI_DIR": str(self.config.pki_dir), "VDX_TRUST_DIR": str(self.config.trust_dir),
            "VDX_HUB_ID": HUB_ID, "VDX_HOME": str(tmp / "home"),
        }


@contextmanager
def site(backend: str, tmp: Path, the_pki: Pki) -> Iterator[Site]:
    """A fresh vhost and database with every agency registered through vdx.registry.admin.Admin."""
    with temp_database(backend, tmp) as db, temp_vhost() as (api, vhost):
        config = HubConfig(db.url, api.settings, the_pki.path, the_pki.path, "bench")
        admin = Admin(config, engine=db.engine, api=api)
        logins = {}
        for agency in the_pki.agencies:
            _node, credentials = admin.register(agency.code, f"Cơ quan {agency.code}",
                                                agency.pem)
            logins[agency.code] = credentials.amqp_url
        yield Site(vhost, api, db, config, logins)


class HubProcess:
    """`vdx hub run --workers N --prefetch P` in its own process group."""

    def __init__(self, the_site: Site, tmp: Path, workers: int, prefetch: int,
                 env_extra: dict[str, str] | None = None) -> None:
        self.site = the_site
        self.workers = workers
        self.log_path = tmp / f"hub-{secrets.token_hex(3)}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vdx_cli.cli", "hub", "run", "--workers", str(workers),
             "--prefetch", str(prefetch)],
            env=the_site.environment(tmp) | (env_extra or {}), stdout=subprocess.DEVNULL,
            stderr=log, start_new_session=True, cwd=ROOT)
        log.close()
        self._undo = CLEANUP.push(f"kill hub {self.proc.pid}", self.kill)

    def wait_ready(self, timeout: float = 60.0) -> list[int]:
        """The worker pids, once every worker consumes vdx.hub.submit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.proc.returncode}): {self.log_tail()}")
            pids = self.worker_pids()
            # each worker logs {"event": "ready"} once it consumes (the management API's
            # consumer count lags by its statistics interval)
            if len(pids) >= self.workers and self.log_tail(10**7).count(
                    '"event": "ready"') >= self.workers:
                return pids
            time.sleep(0.2)
        raise RuntimeError(f"{self.workers} hub workers did not start: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        return [pid for pid in children(self.proc.pid)
                if b"spawn_main" in _read(f"/proc/{pid}/cmdline")]

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (workers finish their batch), then SIGKILL the group if needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._undo()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                # the command may hold spaces and parentheses: fields follow the last ')'
                fields = stat[stat.rfind(b")") + 2:].split()
                if len(fields) > 1 and int(fields[1]) == pid:
                    found.append(int(entry))
    return found


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


# ---------------------------------------------------------------------------- memory


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM), 0 if the process is gone."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(field.encode() + b":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------- CPU

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, exited_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (0 if gone), with ``exited_children`` plus
    those of its children that have exited and been waited for."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat[stat.rfind(b")") + 2:].split()
    last = 15 if exited_children else 13  # utime, stime[, cutime, cstime]
    return sum(int(f) for f in fields[11:last]) / _TICK


def pids_named(*names: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _read(f"/proc/{entry}/comm").strip().decode(
                errors="replace") in names:
            found.append(int(entry))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores) outside idle and iowait."""
    fields = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuMeter:
    """CPU used by each part of the benchmark between :meth:`start` and :meth:`stop`,
    in cores (CPU seconds per wall second); ``other`` is the rest of the machine.

    The servers are found by name at every sample, together with what their exited
    children used: the PostgreSQL backends the hub opens and closes during a measurement
    (it takes fresh connections after a large package) count as ``postgresql``."""

    SERVERS = {"rabbitmq": ("beam.smp",), "postgresql": ("postgres",)}

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def _sample(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        for name, comm in self.SERVERS.items():
            pids = pids_named(*comm)
            # a child that exits moves its whole time from its own line to its parent's
            # children's time, so the group's total only ever grows by what was used meanwhile
            out[name] = sum(cpu_seconds(p, exited_children=True) for p in pids)
        out["machine"] = machine_busy_seconds()
        return out

    def start(self) -> None:
        self._t0, self._s0 = time.monotonic(), self._sample()

    def stop(self) -> dict[str, float]:
        wall, s1 = time.monotonic() - self._t0, self._sample()
        used = {name: (s1[name] - self._s0[name]) / wall for name in s1}
        used["other"] = used.pop("machine") - sum(used.values())
        return {name: round(v, 3) for name, v in used.items()}


def wait_until_quiet(max_wait: float, threshold: float = 0.25) -> dict:
    """Wait up to ``max_wait`` seconds for the machine to use less than ``threshold``
    cores (sampled over 2 s) before a measurement: on a shared machine other people's test
    suites would otherwise be measured with the hub. Returns what was seen."""
    started = time.monotonic()
    while True:
        t0, b0 = time.monotonic(), machine_busy_seconds()
        time.sleep(2)
        busy = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        waited = time.monotonic() - started
        if busy < threshold or waited >= max_wait:
            return {"busy_cores": round(busy, 2), "waited_s": round(waited, 1),
                    "quiet": busy < threshold}
        time.sleep(3)
