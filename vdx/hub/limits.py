"""Per-node rate and volume limits, enforced by the hub before any signature is checked.

A node may have (``vdx node set-limits``, columns of ``nodes``; none by default):

- a **rate**: packages per second on average, with a **burst** (how many it may send at
  once above that; default :func:`default_burst`): a token bucket of ``burst`` tokens
  refilled at ``rate`` per second, one token per package;
- a **volume**: bytes of packages per UTC day.

A package beyond either gets a ``rejected`` receipt with ``transport.rate_limited``; it
costs the hub one short query and that receipt, never a parse or a signature check.

**Across workers.** The bucket and the day's bytes live in the database (``node_usage``)
and every worker charges them in one short transaction per batch (:func:`charge`), under
a row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time): the
limits hold for the hub as a whole, whatever the number of workers. A batch with no
limited sender reads the limits (one query) and writes nothing. A batch that fails after
its charge and comes back is charged again: a crash can only make a node's limit
stricter for a moment, never looser.

:func:`spend` is the rule itself, pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vdx.errors import TransportError
from vdx.store import NodeRow, NodeUsageRow

BURST_SECONDS = 10  # the default burst: this many seconds' worth of the rate


@dataclass(frozen=True)
class NodeLimits:
    """A node's limits; None: no limit of that kind."""

    rate: float | None = None  # packages per second
    burst: int | None = None  # packages at once; None: default_burst(rate)
    max_bytes_per_day: int | None = None

    @property
    def any(self) -> bool:
        return self.rate is not None or self.max_bytes_per_day is not None

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else default_burst(self.rate or 0))

    def to_dict(self) -> dict[str, float | int | None]:
        return {"rate_per_second": self.rate, "burst": self.burst,
                "max_bytes_per_day": self.max_bytes_per_day}


def default_burst(rate: float) -> int:
    return max(1, math.ceil(rate * BURST_SECONDS))


@dataclass(frozen=True)
class Usage:
    """What a node used: ``tokens`` left at ``at``, ``bytes_today`` sent on ``day``."""

    tokens: float
    at: datetime
    day: str
    bytes_today: int


def fresh_usage(limits: NodeLimits, now: datetime) -> Usage:
    """A full bucket and nothing sent today."""
    return Usage(limits.capacity, now, now.date().isoformat(), 0)


def spend(usage: Usage, limits: NodeLimits, sizes: Sequence[int],
          now: datetime) -> tuple[list[bool], Usage]:
    """Which of the packages of ``sizes`` bytes (in the order they came) fit in
    ``limits``, and the usage after them. A package that does not fit costs nothing."""
    tokens = usage.tokens
    if limits.rate is not None:
        elapsed = max(0.0, (now - usage.at).total_seconds())
        tokens = min(limits.capacity, tokens + elapsed * limits.rate)
    today = now.date().isoformat()
    sent = usage.bytes_today if usage.day == today else 0
    fits = []
    for size in sizes:
        ok = ((limits.rate is None or tokens >= 1.0)
              and (limits.max_bytes_per_day is None or sent + size <= limits.max_bytes_per_day))
        if ok:
            if limits.rate is not None:
                tokens -= 1.0
            sent += size
        fits.append(ok)
    return fits, Usage(tokens, now, today, sent)


def refusal(code: str, limits: NodeLimits) -> TransportError:
    """The error a package beyond ``code``'s limits is rejected with."""
    shown = []
    if limits.rate is not None:
        shown.append(f"{limits.rate:g} packages/s (burst {int(limits.capacity)})")
    if limits.max_bytes_per_day is not None:
        shown.append(f"{limits.max_bytes_per_day:,} bytes a day")
    return TransportError("transport.rate_limited",
                          f"{code} sent more than its limit of {' and '.join(shown)}; "
                          f"send it again later")


# ------------------------------------------------------------------------ the database


def read_limits(session: Session, codes: Sequence[str]) -> dict[str, NodeLimits]:
    """The limits of those of ``codes`` that have any (one query)."""
    if not codes:
        return {}
    rows = session.execute(
        select(NodeRow.code, NodeRow.rate_per_second, NodeRow.burst, NodeRow.max_bytes_per_day)
        .where(NodeRow.code.in_(sorted(set(codes))))
        .where((NodeRow.rate_per_second.is_not(None))
               | (NodeRow.max_bytes_per_day.is_not(None))))
    return {code: NodeLimits(rate, burst, volume) for code, rate, burst, volume in rows}


def charge(session: Session, demands: Mapping[str, Sequence[int]],
           limits: Mapping[str, NodeLimits], now: datetime) -> dict[str, list[bool]]:
    """Charge each limited node of ``demands`` (code → sizes of its packages, in order)
    in the caller's write transaction; which of its packages fit."""
    codes = sorted(code for code in demands if code in limits)
    if not codes:
        return {}
    rows = {row.code: row for row in session.scalars(
        select(NodeUsageRow).where(NodeUsageRow.code.in_(codes))
        .order_by(NodeUsageRow.code).with_for_update())}
    verdicts = {}
    for code in codes:
        row = rows.get(code)
        usage = (fresh_usage(limits[code], now) if row is None else
                 Usage(row.tokens, row.refilled_at, row.day, row.bytes_today))
        verdicts[code], after = spend(usage, limits[code], demands[code], now)
        if row is None:
            row = NodeUsageRow(code=code)
            session.add(row)
        row.tokens, row.refilled_at = after.tokens, after.at
        row.day, row.bytes_today = after.day, after.bytes_today
    return verdicts

