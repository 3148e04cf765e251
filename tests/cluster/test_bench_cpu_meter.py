"""``bench.rig``'s CPU accounting: what a process's children used is found again after
they have exited, so a PostgreSQL backend that closes during a measurement is counted as
the database's, not as the rest of the machine's. The figures themselves are never
asserted, only where the time is booked."""

from __future__ import annotations

import os
import subprocess
import sys

from bench import rig

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_an_exited_child_moves_its_time_to_its_parent_and_no_time_is_lost():
    me = os.getpid()
    own, with_children = rig.cpu_seconds(me), rig.cpu_seconds(me, exited_children=True)

    subprocess.run([sys.executable, "-c", BURN], check=True)  # waited for: reaped

    children = (rig.cpu_seconds(me, exited_children=True) - rig.cpu_seconds(me)) \
        - (with_children - own)
    assert children >= 0.25  # the child's 0.3 s (clock ticks of 10 ms)
    assert rig.cpu_seconds(me) - own < children  # not our own time


def test_a_gone_process_counts_nothing():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert rig.cpu_seconds(child.pid) == 0.0
    assert rig.cpu_seconds(child.pid, exited_children=True) == 0.0
