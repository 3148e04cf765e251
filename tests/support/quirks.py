"""The live-traffic corpus (``tests/corpus/quirks``) addressed to the agencies of a test
hub: each package's codes and DocumentId are rewritten so that it can travel."""

from __future__ import annotations

import secrets

from tests.support import TESTS

QUIRKS = TESTS / "corpus" / "quirks"
G22, H41 = "000.00.00.G22", "000.00.00.H41"
DOCUMENT_ID = f"{G22},2026/11/01,12/VPCP-TTĐT"
# The corpus's codes outside the official forms, and how a test makes a fresh one of
# the same kind (broker accounts are global: codes must not collide between runs).
NONSTANDARD = {
    "vxp.saas.03": lambda tag: f"vxp.saas.t{tag}",
    "01.02.G22": lambda tag: f"01.{tag}.G22",
    "001.00.20.TT2": lambda tag: f"001.{tag}.20.TT2",
}


def fresh_nonstandard_codes() -> dict[str, str]:
    tag = secrets.token_hex(3)
    return {code: make(tag) for code, make in NONSTANDARD.items()}


def corpus_names() -> list[str]:
    return sorted(p.name for p in QUIRKS.glob("*.xml"))


def addressed(name: str, codes: dict[str, str], document_id: str) -> bytes:
    """Corpus package ``name`` with each corpus code replaced by ``codes[code]`` (the
    official ones too: ``000.00.00.G22`` → a test agency) and its DocumentId (or, for a
    status, the one it is about) by ``document_id``."""
    text = (QUIRKS / name).read_text(encoding="utf-8").replace(DOCUMENT_ID, document_id)
    for old, new in codes.items():
        text = text.replace(f">{old}<", f">{new}<")  # whole element texts only
    return text.encode("utf-8")
