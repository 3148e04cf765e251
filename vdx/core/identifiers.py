"""Agency identifiers (mã định danh) in the two official forms.

* QCVN 102:2016: ``NNN.NN.NN.LNN``, e.g. ``000.00.00.G22``; the right-most group is level 1
  (a capital letter and two digits), levels 2, 3 and 4 are to its left.
* Decision 20/2020/QĐ-TTg: at most 35 characters, groups of digits and capital letters
  separated by dots, starting with the level-1 group (``H41``) and growing to the right
  (``H41.01``, ``H41.01.05``).

The check only says whether the form is right, and if not exactly what is wrong; the
registry decides which identifiers exist. Live traffic also carries codes in neither
form (test systems such as ``vxp.saas.03``, older codes such as ``01.02.G22`` or
``001.00.20.TT2``): such a code is only a warning in a package, and the hub routes it
when its registry knows it (registering one takes an explicit option). What no hub can
ever route is a code that cannot name a node at all (:func:`node_code_problem`): it
becomes a broker account, an inbox queue and a file name.
"""

from __future__ import annotations

import re
from enum import Enum

from vdx.errors import EnvelopeError

_QCVN102 = re.compile(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}")
_QD20 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]+)*")
_LEVEL1 = re.compile(r"[A-Z][0-9]{2}")
_QCVN102_GROUPS = ((3, "3 digits"), (2, "2 digits"), (2, "2 digits"))
QD20_MAX_LENGTH = 35
# What a node's code may hold whatever its form: it becomes a broker user name, a queue
# name (vdx.node.<code>.inbox) and a file name, so no separators, spaces, wildcards or
# leading dots; at most as long as the longest official code.
_NODE_CODE = re.compile(r"[0-9A-Za-z](?:[0-9A-Za-z._-]{0,33}[0-9A-Za-z])?")


class IdentifierForm(Enum):
    QCVN_102_2016 = "QCVN 102:2016"
    DECISION_20_2020 = "Decision 20/2020"


def identifier_form(code: str) -> IdentifierForm:
    """Return the form ``code`` is written in, or raise ``envelope.bad_identifier``."""
    problem = identifier_problem(code)
    if problem is not None:
        raise EnvelopeError("envelope.bad_identifier", problem)
    if _QCVN102.fullmatch(code):
        return IdentifierForm.QCVN_102_2016
    return IdentifierForm.DECISION_20_2020


def is_valid_identifier(code: str) -> bool:
    """Whether ``code`` is in one of the two official forms."""
    return identifier_problem(code) is None


def identifier_problem(code: str) -> str | None:
    """``None`` when ``code`` is well formed, else one sentence saying what is wrong."""
    if not code:
        return "the agency identifier is empty"
    if _QCVN102.fullmatch(code) or (len(code) <= QD20_MAX_LENGTH and _QD20.fullmatch(code)):
        return None
    shown = repr(code)
    if code != code.strip():
        return f"{shown} has spaces around it"
    if any(ch.islower() for ch in code):
        return f"{shown} contains lower-case letters; identifiers use digits and capital letters"
    bad = sorted({ch for ch in code if not (ch.isdigit() or "A" <= ch <= "Z" or ch == ".")})
    if bad:
        return (f"{shown} contains {''.join(bad)!r}; only digits, capital letters and dots "
                f"are allowed")
    groups = code.split(".")
    if "" in groups:
        return f"{shown} has an empty group (two dots in a row, or a dot at either end)"
    if len(code) > QD20_MAX_LENGTH:
        return f"{shown} is {len(code)} characters long; at most {QD20_MAX_LENGTH} are allowed"
    if _LEVEL1.fullmatch(groups[-1]):
        return _qcvn102_problem(shown, groups)
    return (
        f"{shown} is in neither form: QCVN 102:2016 is NNN.NN.NN.LNN (e.g. 000.00.00.H41) and "
        f"Decision 20/2020 starts with the level-1 group, a capital letter and two digits "
        f"(e.g. H41.01); {groups[0]!r} is not such a group"
    )


def _qcvn102_problem(shown: str, groups: list[str]) -> str:
    """The code ends with a level-1 group, so it was meant as QCVN 102:2016."""
    if len(groups) != 4:
        return (
            f"{shown} has {len(groups)} groups; the QCVN 102:2016 form NNN.NN.NN.LNN has 4 "
            f"(e.g. 000.00.00.H41)"
        )
    pairs = zip(groups, _QCVN102_GROUPS, strict=True)
    for position, (group, (size, what)) in enumerate(pairs, start=1):
        if len(group) != size or not group.isdigit():
            return f"{shown}: group {position} {group!r} should be {what} (form NNN.NN.NN.LNN)"
    return f"{shown} is not in the form NNN.NN.NN.LNN"  # pragma: no cover - unreachable


def node_code_problem(code: str) -> str | None:
    """``None`` when ``code`` can name a node on a hub, whatever its form; else why not.

    Official codes always can. Others must be 1 to 35 letters, digits, ``.``, ``-`` or
    ``_``, starting and ending with a letter or digit (``vxp.saas.03`` can).
    """
    if identifier_problem(code) is None or _NODE_CODE.fullmatch(code):
        return None
    if not code:
        return "the agency identifier is empty"
    shown = repr(code)
    if code != code.strip():
        return f"{shown} has spaces around it"
    if len(code) > QD20_MAX_LENGTH:
        return f"{shown} is {len(code)} characters long; at most {QD20_MAX_LENGTH} are allowed"
    bad = sorted({ch for ch in code if not (ch.isascii() and (ch.isalnum() or ch in "._-"))})
    if bad:
        return (f"{shown} contains {''.join(bad)!r}; a node's code holds only letters, "
                f"digits, '.', '-' and '_'")
    return f"{shown} must start and end with a letter or a digit"
