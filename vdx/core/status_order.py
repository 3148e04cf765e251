"""A recipient's current status about a document: ordered by meaning, not by arrival.

Each status is its own package. Between the recipient's software and the sender they go
through the recipient's client, the broker, the hub's workers and perhaps a gateway, and
nothing along the way promises to keep their order: a status 03 sent while the 01 was
still being confirmed, or two statuses in one batch of the hub, can arrive the other way
round. So wherever the hub reports a recipient's *current* status, it takes the furthest
one by meaning; timelines still list every status as it arrived.

The order, lowest first (codes on one line share a rank):

1. 01 arrived: the recipient's client sends it on its own, before anything else.
2. 02 refused, 03 accepted: the recipient's decision on what arrived.
3. 04 assigned.
4. 05 processing.
5. 06 finished, 16 a recall/update request refused: the recipient's last word on this
   version (the work is done, or the recipient keeps the document).
6. 15 a recall/update request agreed: the document is given back or replaced; nothing
   said about this version before can revive it.

- Between statuses of equal rank the later arrival wins: 02 and 03 are alternatives
  (a recipient that changes its mind sends the other one later), and so are 06 and 16
  (a refusal of a recall that came after the work was finished, or the work finished
  after a refused recall; either way the later one is the news).
- 04 and above imply the document was taken in, so they also replace a 02 (a refusal
  reversed by handling it).
- 15 and 16 answer a request the sender made after the document arrived, so they rank
  above the handling steps that may still be in flight (01 to 05). The cost: handling steps sent
  after a refused request (16, then 04 or 05) are not shown until 06; the sender still
  receives each of them as a status package.
- 13 is the sender's own request to recall the document, not a recipient's status: it
  has no rank and never becomes a recipient's current status.
- Codes outside the table have no rank either. A current status without a rank (a 13
  that a gateway stored before this order existed) gives way to any recipient status.

Pure: strings in, strings out.
"""

from __future__ import annotations

from collections.abc import Iterable

RANKS: dict[str, int] = {
    "01": 1,
    "02": 2, "03": 2,
    "04": 3,
    "05": 4,
    "06": 5, "16": 5,
    "15": 6,
}


def status_rank(code: str | None) -> int | None:
    """Where ``code`` stands among a recipient's statuses; ``None`` for 13 and anything
    that is not a recipient's status."""
    return RANKS.get(code) if code is not None else None


def supersedes(new: str, current: str | None) -> bool:
    """Whether ``new``, arriving after ``current``, becomes the recipient's current
    status: it must be a recipient's status, at least as far along as ``current``."""
    rank = status_rank(new)
    if rank is None:
        return False
    held = status_rank(current)
    return held is None or rank >= held


def current_status(codes: Iterable[str]) -> str | None:
    """The current status after ``codes``, given in arrival order; ``None`` if none of
    them is a recipient's status."""
    current: str | None = None
    for code in codes:
        if supersedes(code, current):
            current = code
    return current
