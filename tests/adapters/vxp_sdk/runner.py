"""Compile and run the Java programs of this folder against the real SDK jars.

- :func:`toolchain_problem` says why the real SDK cannot run here (no ``javac``/``java``,
  no ``../shared/vxp-sdk``), or ``None``;
- :func:`compile_java` builds a source file against the jars of one SDK version into a
  directory the caller owns (pytest's tmp dir): nothing is built inside the tree;
- :class:`SdkDriver` runs ``SdkDriver.java`` as one long-lived JVM (``-Duser.timezone``
  chosen) and speaks its JSON-lines protocol: :meth:`SdkDriver.call` makes one SDK call
  and returns a :class:`SdkCall`, which holds what the SDK returned, or the exception it
  threw, and the exceptions it printed and swallowed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SDK_VERSIONS = ("2.0.1", "2.0.0")
ZONES = ("UTC", "Asia/Ho_Chi_Minh")
EDXML_JAR = "EdXML102-0.0.3.jar"


def jars_dir() -> Path | None:
    """``../shared/vxp-sdk`` (``shared/`` as :func:`tests.conftest.shared_dir` finds it)."""
    from tests.conftest import shared_dir

    shared = shared_dir()
    if shared is None or not (shared / "vxp-sdk").is_dir():
        return None
    return shared / "vxp-sdk"


def toolchain_problem() -> str | None:
    """Why the real SDK cannot be run on this machine, or ``None``."""
    missing = [tool for tool in ("javac", "java") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH (.ci/run installs a JDK)"
    jars = jars_dir()
    if jars is None:
        return "../shared/vxp-sdk (the SDK's jars) is not here"
    absent = [name for name in (*(f"SDKVXP-{v}.jar" for v in SDK_VERSIONS), EDXML_JAR)
              if not (jars / name).is_file()]
    if absent:
        return f"{', '.join(absent)} missing from {jars}"
    return None


def classpath(version: str) -> list[Path]:
    """Every jar of ``../shared/vxp-sdk`` with exactly one SDK version among them."""
    jars = jars_dir()
    assert jars is not None, toolchain_problem()
    chosen = [j for j in sorted(jars.glob("*.jar"))
              if not j.name.startswith("SDKVXP-") or j.name == f"SDKVXP-{version}.jar"]
    assert any(j.name == f"SDKVXP-{version}.jar" for j in chosen), version
    return chosen


def compile_java(source: Path, version: str, out: Path) -> Path:
    """``javac`` ``source`` against SDK ``version``'s classpath into ``out``; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    cp = os.pathsep.join(str(j) for j in classpath(version))
    done = subprocess.run(["javac", "-encoding", "UTF-8", "-nowarn", "-cp", cp, "-d", str(out),
                           str(source)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise AssertionError(f"javac {source.name} failed:\n{done.stdout}{done.stderr}")
    return out


def java_command(classes: Path, version: str, zone: str, main: str) -> list[str]:
    cp = os.pathsep.join([str(classes), *(str(j) for j in classpath(version))])
    return ["java", f"-Duser.timezone={zone}", "-Dfile.encoding=UTF-8", "-Xshare:auto",
            "-cp", cp, main]


def params(**values: str) -> str:
    """The JSON string the SDK's methods take (their parameters, later headers)."""
    return json.dumps(values, ensure_ascii=False)


@dataclass
class SdkCall:
    """One SDK call as the driver reported it."""

    op: str
    reply: dict[str, Any] = field(repr=False)

    @property
    def returned(self) -> bool:
        """The SDK method returned (it did not throw)."""
        return bool(self.reply.get("ok"))

    @property
    def result(self) -> dict[str, Any] | None:
        return self.reply.get("result")

    @property
    def exception(self) -> dict[str, Any] | None:
        return self.reply.get("exception")

    @property
    def swallowed(self) -> list[dict[str, Any]]:
        """Exceptions the SDK printed and swallowed during the call."""
        return self.reply.get("swallowed") or []

    @property
    def timestamp(self) -> str | None:
        """The service object's XroadVnpt-timestamp (fixed when it was made)."""
        return self.reply.get("timestamp")

    def field(self, name: str) -> Any:
        return (self.result or {}).get(name)

    @property
    def status(self) -> str | None:
        return self.field("status")

    @property
    def error_code(self) -> str | None:
        return self.field("errorCode")

    def describe(self) -> str:
        brief = {k: v for k, v in self.reply.items() if k not in ("log_tail",)}
        result = brief.get("result")
        if isinstance(result, dict) and isinstance(result.get("data"), str) \
                and len(result["data"]) > 300:
            brief["result"] = result | {"data": result["data"][:300] + "…"}
        text = json.dumps(brief, ensure_ascii=False)
        if self.swallowed or not self.returned:
            text += "\n--- what the SDK printed (tail) ---\n" + self.reply.get("log_tail", "")
        return text

    def is_result(self) -> bool:
        """A result object came back, the SDK threw nothing and swallowed nothing."""
        return self.returned and self.result is not None and not self.swallowed


class SdkDriver:
    """One JVM running ``SdkDriver`` on one SDK version, in one time zone."""

    def __init__(self, classes: Path, version: str, zone: str, log: Path) -> None:
        self.version, self.zone = version, zone
        self._log = log.open("ab")
        self._process = subprocess.Popen(
            java_command(classes, version, zone, "SdkDriver"), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, cwd=log.parent)  # relative paths land there
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.ready = self._receive(timeout=60)
        assert self.ready.get("event") == "ready", self.ready

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the SDK driver ({self.version}, {self.zone}) did not "
                                 f"answer within {timeout} s") from None
        if line is None:
            raise AssertionError(f"the SDK driver exited ({self._process.poll()}); see "
                                 f"{self._log.name}")
        return json.loads(line)

    def request(self, timeout: float = 120.0, **command: Any) -> dict[str, Any]:
        self._next_id += 1
        command["id"] = self._next_id
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command, ensure_ascii=False).encode() + b"\n")
        self._process.stdin.flush()
        reply = self._receive(timeout)
        assert reply.get("id") == self._next_id, reply
        assert not reply.get("driver_error"), reply
        return reply

    # ---------------------------------------------------------------- commands --

    def configure(self, name: str, endpoint: str, system_id: str, secret: str,
                  store: Path) -> None:
        """``VnptProperties(endpoint, systemId, secret, storePath, 10, 3)`` kept as ``name``."""
        store.mkdir(parents=True, exist_ok=True)
        reply = self.request(cmd="config", name=name, endpoint=endpoint, systemId=system_id,
                             secret=secret, storePath=str(store))
        assert reply["ok"], reply

    def open(self, name: str, config: str, kind: str = "knobstick") -> str:
        """Make one service object, kept as ``name``; returns its fixed timestamp."""
        reply = self.request(cmd="open", name=name, config=config, kind=kind)
        assert reply["ok"], reply
        return reply["timestamp"]

    def call(self, op: str, *args: str, config: str | None = None,
             obj: str | None = None) -> SdkCall:
        """``op(*args)`` through the kept object ``obj``, or a new one made from ``config``."""
        assert (config is None) != (obj is None)
        where = {"object": obj} if obj is not None else {"config": config}
        return SdkCall(op, self.request(cmd="call", op=op, args=list(args), **where))

    def bench(self, **command: Any) -> dict[str, Any]:
        return self.request(cmd="bench", timeout=1800, **command)

    def close(self) -> None:
        try:
            if self._process.poll() is None and self._process.stdin is not None:
                self._process.stdin.write(b'{"cmd":"quit"}\n')
                self._process.stdin.flush()
                self._process.stdin.close()
            self._process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(10)
        finally:
            self._log.close()

    def __enter__(self) -> SdkDriver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
