"""Packages built to cost more than their size are refused, each with its code, cheaply.

The corpus (``tests/support/hostile.py``) is generated here, never committed. Each case is
refused by ``parse_untrusted``, ``vdx.parse`` and ``vdx.check``; the counts taken before
parsing (``vdx.core.xmlcount``) agree with what lxml builds; and the worst full shapes are
refused in a subprocess whose peak memory stays within a fraction of the package's size.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from vdx_cli.cli import main

import vdx
from tests.support import TESTS
from tests.support.hostile import corpus, worst
from vdx.core import xmlcount, xmlsafe
from vdx.core.xmlsafe import DEFAULT_LIMITS, ParseLimits, parse_untrusted
from vdx.errors import CATALOGUE, EnvelopeError

CASES = {case.name: case for case in corpus()}
REPO = TESTS.parent


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_hostile_package_is_refused_with_its_code(name):
    case = CASES[name]
    assert case.code in CATALOGUE
    with pytest.raises(EnvelopeError) as raised:
        parse_untrusted(case.data)
    assert raised.value.code == case.code
    assert raised.value.line is not None
    assert [p.code for p in vdx.check(case.data).problems] == [case.code]
    with pytest.raises(EnvelopeError) as parsed:
        vdx.parse(case.data)
    assert parsed.value.code == case.code


def test_the_refusal_names_the_line_of_the_first_node_too_many():
    with pytest.raises(EnvelopeError) as raised:
        parse_untrusted(CASES["many_elements_one_per_line"].data)
    # line 1 the declaration, line 2 the root (node 1), then one <a/> per line
    assert raised.value.line == 2 + DEFAULT_LIMITS.max_elements
    assert "100,000" in raised.value.message


def test_a_package_just_within_the_counts_is_parsed():
    limits = ParseLimits(max_elements=5, max_attributes=3, max_namespaces=2)
    data = (b'<?xml version="1.0"?><r xmlns="urn:a" xmlns:b="urn:b" x="1">'
            b'<a y="2" z="3"/><!--c--><?p?></r>')
    assert parse_untrusted(data, limits).getroot().tag == "{urn:a}r"
    for tighter in (ParseLimits(max_elements=3), ParseLimits(max_attributes=2),
                    ParseLimits(max_namespaces=1)):
        with pytest.raises(EnvelopeError):
            parse_untrusted(data, tighter)


def test_real_packages_take_the_quick_path():
    """The SDK's samples and the fixtures are far under every count: no scan token by token."""
    real = [*(TESTS.parent.parent / "shared" / "samples" / "edxml-sdk").glob("*.edxml"),
            *(TESTS / "corpus" / "quirks").glob("*.xml")]
    assert len(real) >= 10
    for path in real:
        view = xmlcount._markup_view(path.read_bytes())
        assert not xmlcount._may_exceed(view, DEFAULT_LIMITS), path.name


def test_an_lxml_failure_while_checking_becomes_a_refusal(monkeypatch):
    def fail(*_args):
        raise etree.XPathEvalError("XPath stack overflow")

    monkeypatch.setattr(xmlsafe, "_may_exceed", fail)
    with pytest.raises(EnvelopeError) as raised:
        parse_untrusted(b"<r><a/></r>")
    assert raised.value.code == "envelope.too_complex"
    assert "XPathEvalError" in raised.value.message


def test_running_out_of_memory_while_parsing_becomes_a_refusal(monkeypatch):
    def exhausted(*_args):
        raise MemoryError

    monkeypatch.setattr(xmlsafe.etree, "fromstring", exhausted)
    with pytest.raises(EnvelopeError) as raised:
        parse_untrusted(b"<r/>")
    assert raised.value.code == "envelope.too_complex"


def test_an_encoding_nobody_can_read_is_refused():
    with pytest.raises(EnvelopeError) as raised:
        parse_untrusted(b'<?xml version="1.0" encoding="x-no-such"?><r/>')
    assert raised.value.code == "envelope.bad_encoding"


# ---------------------------------------------------------------- counts agree with lxml

_TEXT = st.text("xy=<&\"'é", max_size=8)


@st.composite
def documents(draw, depth: int = 0) -> etree._Element:  # noqa: ANN001
    nsmap = {f"p{i}": f"urn:{draw(st.text('ab=', max_size=3))}"
             for i in range(draw(st.integers(0, 2)))}
    element = etree.Element("r" if not depth else "e", nsmap=nsmap or None)
    for i in range(draw(st.integers(0, 3))):
        element.set(f"k{i}", draw(_TEXT))
    element.text = draw(st.none() | _TEXT | _TEXT.map(etree.CDATA))
    for _ in range(draw(st.integers(0, 3 if depth < 4 else 0))):
        kind = draw(st.sampled_from(["element", "element", "comment", "pi"]))
        if kind == "element":
            child = draw(documents(depth + 1))
        elif kind == "comment":
            child = etree.Comment(draw(st.text("c<=>", max_size=5)))
        else:
            child = etree.ProcessingInstruction("p", draw(st.text("d<=>", max_size=5)))
        child.tail = draw(st.none() | _TEXT)
        element.append(child)
    return element


def _true_counts(data: bytes) -> tuple[int, int, int]:
    nodes = attributes = namespaces = 0
    for event, item in etree.iterparse(io.BytesIO(data),
                                       events=("start", "comment", "pi", "start-ns")):
        if event == "start-ns":
            namespaces += 1
            continue
        nodes += 1
        if event == "start":
            attributes += len(item.attrib)
    return nodes, attributes, namespaces


@settings(max_examples=300, deadline=None)
@given(tree=documents(), elements=st.integers(0, 30), attributes=st.integers(0, 12),
       namespaces=st.integers(0, 6), declaration=st.booleans())
def test_counts_before_parsing_agree_with_the_tree(tree, elements, attributes, namespaces,
                                                    declaration):
    data = etree.tostring(tree, encoding="UTF-8", xml_declaration=declaration)
    nodes, attrs, nss = _true_counts(data)
    limits = ParseLimits(max_elements=elements, max_attributes=attributes,
                         max_namespaces=namespaces)
    over = {code for code, count, limit in (
        ("envelope.too_many_elements", nodes, elements),
        ("envelope.too_many_attributes", attrs, attributes),
        ("envelope.too_many_namespaces", nss, namespaces)) if count > limit}
    try:
        xmlcount._scan(data, limits)
        refused = None
    except EnvelopeError as exc:
        refused = exc.code
    assert (refused in over) if over else refused is None
    if refused is not None:  # the quick look in C never lets a refusal through
        assert xmlcount._may_exceed(data, limits)


# ---------------------------------------------------------------- memory, in a subprocess

# The peak is read from /proc (VmHWM, this process's own high-water mark): getrusage's
# ru_maxrss of a child starts at its parent's size when it was spawned, which would hide it.
_PEAK = textwrap.dedent("""
    import json, os, sys
    from vdx.core.xmlsafe import parse_untrusted
    from vdx.errors import EnvelopeError

    def peak():
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    fd = os.open(sys.argv[1], os.O_RDONLY)
    data = os.read(fd, os.fstat(fd).st_size)  # one buffer of the file's size, no more
    before = peak()
    try:
        parse_untrusted(data)
        code = None
    except EnvelopeError as exc:
        code = exc.code
    print(json.dumps({"code": code, "size": len(data), "extra": peak() - before}))
""")


@pytest.mark.parametrize(("shape", "code"), [
    ("elements", "envelope.too_many_elements"),
    ("attributes", "envelope.too_many_attributes"),
    ("namespaces", "envelope.too_many_namespaces"),
])
def test_the_worst_shapes_are_refused_in_memory_far_below_their_size(shape, code, tmp_path):
    """16 MiB of one shape, read from a file: refused before any tree is built, so parsing
    adds less than a quarter of the package's size to the process's peak memory (a tree
    of it would add 20 to 40 times its size)."""
    package = tmp_path / f"{shape}.xml"
    package.write_bytes(worst(shape, 16 * 1024 * 1024))
    run = subprocess.run([sys.executable, "-c", _PEAK, str(package)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(run.stdout)
    assert result["code"] == code
    assert result["extra"] < result["size"] / 4, result


# ---------------------------------------------------------------- vdx envelope check

@pytest.mark.parametrize("name", ["many_elements", "many_attributes_on_one_element",
                                  "many_namespaces", "many_elements_utf7", "huge_text"])
def test_envelope_check_reports_the_code_without_a_traceback(name, tmp_path):
    case = CASES[name]
    package = tmp_path / f"{name}.xml"
    package.write_bytes(case.data)
    runner = CliRunner()
    text = runner.invoke(main, ["envelope", "check", str(package)])
    assert text.exit_code == 1, text.output
    assert case.code in text.output and "Traceback" not in text.output
    as_json = runner.invoke(main, ["envelope", "check", "--json", str(package)])
    assert as_json.exit_code == 1
    (verdict,) = json.loads(as_json.output)
    assert verdict["valid"] is False
    assert [p["code"] for p in verdict["problems"]] == [case.code]
