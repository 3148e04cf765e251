"""Keep a worker's resident memory close to what it holds (glibc's allocator; elsewhere
this does nothing).

A hub worker holds a large package a few times over for a moment (the frames it arrived
in and the body, the body and its parsed tree, the body and the database's buffers),
then nothing. glibc keeps what it freed in the heap for reuse: after one 20 MiB package
a worker would stay tens of MiB larger, and the next package's peak would come on top of
that (measured: 4.1x the package over idle without :func:`tune`, 3.2x with it); and the
frames, freed behind blocks still in use, stayed resident until :func:`trim`.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _mallopt = _libc.mallopt
    _malloc_trim = _libc.malloc_trim
    _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _mallopt = _malloc_trim = None


def tune(mmap_threshold: int = 4 << 20) -> None:
    """Serve every block of ``mmap_threshold`` bytes or more (the body and parsed text of
    a large package) with its own mapping, returned to the system when freed. glibc
    would otherwise raise its threshold to the largest block freed so far (up to 32 MiB)
    and serve the next large package from the heap. Not lower: every fresh mapping is
    paid in page faults, and at 64 KiB (each AMQP frame mapped) 1 MiB packages went
    through 25 % slower."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, mmap_threshold)


def trim() -> None:
    """Give back to the system the pages of the blocks freed in the heap, wherever they
    are (glibc's ``malloc_trim``; it otherwise returns only the free top of the heap).

    For after many blocks below :func:`tune`'s threshold were freed at once: the 128 KiB
    frames a large AMQP message arrived in, once joined into its body. Left resident
    behind a block still in use, they were one more copy of the package until the next
    one reused them; the large blocks that come next (the parsed text, the database's
    buffers) are mapped apart and never do. A few milliseconds for a heap of 100 MiB."""
    if _malloc_trim is not None:
        _malloc_trim(0)
