"""Peak memory and time of the hardened parse for each worst package shape, full size.

    python bench/bench_parse_memory.py [--size BYTES] [--json FILE]

For each shape (many elements, many attributes on one element, many namespace
declarations, one huge text node) a package just under the default ``max_bytes`` is
generated, written to a file and parsed by ``vdx.core.xmlsafe.parse_untrusted`` in a
fresh subprocess, which reports whether it was refused (and with which code), the
seconds taken, and the peak resident memory the parse added over the package bytes
already in memory (``VmHWM``, the process's own high-water mark; getrusage's ru_maxrss
of a child starts at its parent's size), as a multiple of the package size. The
baseline is an ordinary 20 MiB document whose attachment is accepted, in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import document_of_size  # noqa: E402
from tests.support.hostile import worst  # noqa: E402
from vdx.core.xmlsafe import DEFAULT_LIMITS  # noqa: E402

_CHILD = """
import json, os, sys, time
from vdx.core.xmlsafe import parse_untrusted
from vdx.errors import EnvelopeError

def peak():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM:")).split()[1]) * 1024

fd = os.open(sys.argv[1], os.O_RDONLY)
data = os.read(fd, os.fstat(fd).st_size)
before, started = peak(), time.perf_counter()
try:
    tree = parse_untrusted(data)
    code = "accepted"
except EnvelopeError as exc:
    code = exc.code
print(json.dumps({"code": code, "seconds": time.perf_counter() - started,
                  "extra": peak() - before, "size": len(data)}))
"""


def measure(data: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".xml") as package:
        package.write(data)
        package.flush()
        run = subprocess.run([sys.executable, "-c", _CHILD, package.name], cwd=REPO,
                             capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=DEFAULT_LIMITS.max_bytes - 4096,
                    help="bytes of each worst shape (default: just under max_bytes)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    cases = {"baseline: 20 MiB document with an attachment":
             lambda: document_of_size(20 * 1024 * 1024)}
    for shape in ("elements", "attributes", "namespaces", "text"):
        cases[f"many {shape}" if shape != "text" else "one huge text node"] = \
            lambda shape=shape: worst(shape, args.size)
    rows = {}
    print(f"{'package':<46} {'MiB':>6} {'outcome':<30} {'seconds':>8} {'peak ÷ size':>12}")
    for label, make in cases.items():
        r = measure(make())
        rows[label] = r
        print(f"{label:<46} {r['size'] / 2**20:>6.1f} {r['code']:<30} {r['seconds']:>8.3f} "
              f"{r['extra'] / r['size']:>11.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
