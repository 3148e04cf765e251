"""Helpers shared by the benchmarks: sample packages of a given size and a timer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import date

from vdx import build
from vdx.core import model


def document_of_size(size: int, sender: str = "000.00.00.G22",
                     recipients: tuple[str, ...] = ("000.00.00.H41",)) -> bytes:
    """An unsigned, valid document package of about ``size`` bytes (attachment padding)."""
    base = _document(sender, recipients, b"")
    pad = max(0, (size - len(build(base))) * 3 // 4)
    return build(_document(sender, recipients, os.urandom(pad)))


def _document(sender: str, recipients: tuple[str, ...], data: bytes) -> model.DocumentPackage:
    return model.DocumentPackage(
        sender=model.Organization(sender, organ_name="Văn phòng Chính phủ"),
        recipients=tuple(model.Organization(r) for r in recipients),
        document_id=f"{sender},2026/11/22,{os.urandom(4).hex()}/VPCP-TTĐT",
        code=model.Code("7816", "VPCP-TTĐT"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=model.SignerInfo("Nguyễn Văn A", "KT. BỘ TRƯỞNG", "Thứ trưởng"),
        attachments=(model.Attachment("van-ban.pdf", "application/pdf", data),) if data else (),
    )


def per_call(fn: Callable[[], object], min_seconds: float = 1.0) -> float:
    """Seconds per call of ``fn``: best of three runs of at least ``min_seconds / 3``."""
    fn()
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / 3:
                break
        best = min(best, elapsed / n)
    return best


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"
