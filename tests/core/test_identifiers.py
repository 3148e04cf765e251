from __future__ import annotations

import pytest

from vdx.core.identifiers import IdentifierForm, identifier_form, identifier_problem
from vdx.errors import EnvelopeError


@pytest.mark.parametrize("code, form", [
    ("000.00.00.G22", IdentifierForm.QCVN_102_2016),
    ("000.00.00.H41", IdentifierForm.QCVN_102_2016),
    ("002.00.20.H13", IdentifierForm.QCVN_102_2016),
    ("H41", IdentifierForm.DECISION_20_2020),
    ("H41.01.05", IdentifierForm.DECISION_20_2020),
    ("G01.A1.002", IdentifierForm.DECISION_20_2020),
])
def test_valid_forms(code, form):
    assert identifier_problem(code) is None
    assert identifier_form(code) is form


@pytest.mark.parametrize("code, says", [
    ("", "empty"),
    ("28.22.H17", "has 3 groups"),
    ("00.00.00.G22", "group 1 '00' should be 3 digits"),
    ("000.0A.00.G22", "group 2 '0A' should be 2 digits"),
    ("vxp.saas.03", "lower-case"),
    ("000.00.00.G22 ", "spaces"),
    ("000..00.G22", "empty group"),
    ("000/00/00/G22", "'/'"),
    ("H41." + ".".join(["01"] * 20), "at most 35"),
    ("41A.01", "neither form"),
])
def test_malformed_codes_say_what_is_wrong(code, says):
    problem = identifier_problem(code)
    assert problem is not None and says in problem
    with pytest.raises(EnvelopeError) as raised:
        identifier_form(code)
    assert raised.value.code == "envelope.bad_identifier"
