"""Sampling profiles of hub workers with py-spy, and where their time goes.

:class:`Sampler` attaches ``py-spy record --nonblocking --format raw`` to each worker for
the length of a phase. By default py-spy samples only threads that are on the CPU, so a
sample is a slice of worker CPU time; with ``wall=True`` (``--idle``) waiting threads are
sampled too and the shares are of wall-clock time (waiting on fsync, locks, the broker).
:func:`summarise` folds the collapsed stacks into:

- ``inclusive``: for each function in ``vdx/`` (``file:function``), the share of samples
  with it anywhere on the stack (its own time and everything it calls);
- ``attributed``: each sample charged to the DEEPEST ``vdx/`` frame of its stack and to
  the library it was in below that frame (``vdx/verify.py:check_xml_signature →
  signxml``): the list to optimise from, since the shares add up to 100 %;
- ``libraries``: the share of samples whose leaf frame is in each top-level package.

Run standalone to summarise files recorded earlier::

    python bench/profile.py bench/profile/*.txt
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
RATE = 200


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Sampler:
    """py-spy on each of ``pids`` until :meth:`stop`; raw collapsed stacks in ``out``."""

    def __init__(self, pids: list[int], out: Path, label: str, rate: int = RATE,
                 wall: bool = False) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        out.mkdir(parents=True, exist_ok=True)
        self.rate, self.wall = rate, wall
        self.files = [out / f"{label}-worker{i}.txt" for i in range(len(pids))]
        self.started = time.monotonic()
        self.procs = [subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
             "--format", "raw", "--output", str(path), *(["--idle"] if wall else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for pid, path in zip(pids, self.files, strict=True)]
        self.seconds = 0.0

    def stop(self) -> list[Path]:
        self.seconds = time.monotonic() - self.started
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return [p for p in self.files if p.exists()]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _frame(raw: str) -> tuple[str, str]:
    """(``where:function``, top-level package) of one py-spy frame."""
    m = _FRAME.match(raw.strip())
    if not m:
        return raw.strip(), "?"
    func, path = m["func"], m["path"]
    # py-spy shows paths relative to the sys.path entry they were found under
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            path = path.split("/", 1)[1] if marker.startswith("/lib") else path
    if path.startswith("vdx/"):
        return f"{path}:{func}", "vdx"
    top = path.split("/", 1)[0].removesuffix(".py") if "/" in path or path.endswith(".py") \
        else "?"
    return f"{path}:{func}", top


def read_stacks(paths: list[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summarise(paths: list[Path], *, seconds: float | None = None, workers: int | None = None,
              rate: int = RATE, top: int = 15) -> dict:
    stacks = read_stacks(paths)
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    for stack, n in stacks.items():
        frames = [_frame(f) for f in stack]
        for where in {w for w, pkg in frames if pkg == "vdx"}:
            inclusive[where] += n
        libraries[frames[-1][1]] += n
        deepest = max((i for i, (_w, pkg) in enumerate(frames) if pkg == "vdx"), default=None)
        if deepest is None:
            # outside the hub's code: the event loop, pika, the interpreter's start-up
            below = next((pkg for _w, pkg in frames if pkg not in ("stdlib", "?")), "other")
            attributed[f"(outside vdx) {below}"] += n
            continue
        callee = next((pkg for _w, pkg in frames[deepest + 1:] if pkg != "vdx"), None)
        attributed[frames[deepest][0] + (f" → {callee}" if callee else "")] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in counter.most_common(top)] if total else []

    # py-spy in non-blocking mode drops samples it cannot read consistently, so this is
    # how much of rate x time it got, not how busy the workers were (see cpu_cores)
    coverage = total / (rate * seconds * workers) if seconds and workers else None
    return {"samples": total, "coverage": coverage, "inclusive": share(inclusive),
            "attributed": share(attributed), "libraries": share(libraries)}


def render(summary: dict, indent: str = "  ") -> str:
    lines = [f"{indent}{summary['samples']} samples"
             + (f" ({summary['coverage']:.0%} of rate x time x workers)"
                if summary.get("coverage") is not None else "")]
    for title, key in (("charged to the deepest vdx/ frame (adds up to 100 %)", "attributed"),
                       ("inclusive time of vdx/ functions", "inclusive"),
                       ("leaf frames by package", "libraries")):
        lines.append(f"{indent}{title}:")
        lines += [f"{indent}  {share * 100:5.1f} %  {name}" for name, share in summary[key]]
    return "\n".join(lines)


if __name__ == "__main__":
    files = [Path(a) for a in sys.argv[1:]]
    if not files:
        sys.exit("usage: python bench/profile.py RAW_FILE...")
    print(render(summarise(files, top=25)))
