"""The operator files in ``deploy/``: the systemd units are valid for systemd, run commands
and options that ``vdx`` has, and the example environment names only variables the
product reads."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from vdx_cli.cli import main

from tests.conftest import ROOT, require_service

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
INSTALLED_VDX = "/opt/vdx/.venv/bin/vdx"


def test_there_is_a_unit_for_the_hub_the_gateway_and_the_folder_bridge():
    assert {u.name for u in UNITS} >= {"vdx-hub@.service", "vdx-gateway.service",
                                       "vdx-folder@.service"}


def exec_start(unit: Path) -> list[str]:
    (line,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_each_unit_runs_a_vdx_command_with_options_it_has(unit):
    argv = exec_start(unit)
    assert argv[0] == INSTALLED_VDX
    words = [w for w in argv[1:] if not w.startswith("-")]
    command = []
    for word in words:  # the leading words that are sub-commands
        if word.startswith("$") or word.startswith("%"):
            break
        command.append(word)
        if len(command) == 2:
            break
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    for option in (w.split("=")[0] for w in argv[1:] if w.startswith("--")):
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b", result.output), \
            f"{unit.name}: `vdx {' '.join(command)}` has no option {option}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_each_unit(unit, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        require_service("systemd-analyze", "install systemd to check the units")
    vdx = Path(sys.executable).with_name("vdx")
    assert vdx.exists(), vdx
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_VDX, str(vdx)))
    done = subprocess.run([analyze, "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stderr + done.stdout).splitlines()
                if unit.name.split("@")[0] in line or "Unknown" in line]
    assert done.returncode == 0 and not problems, done.stderr + done.stdout


def test_the_example_environment_names_only_variables_the_product_reads():
    example = (DEPLOY / "vdx.env.example").read_text()
    names = re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE)
    assert names, example
    sources = "\n".join(p.read_text() for folder in ("vdx", "adapters")
                        for p in (ROOT / folder).rglob("*.py"))
    for name in names:
        assert f'"{name}"' in sources, f"{name} is not read anywhere in vdx/ or adapters/"
