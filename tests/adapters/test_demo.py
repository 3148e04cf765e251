"""`vdx demo`, the README's first command, end to end on the real broker."""

from __future__ import annotations

import threading

from click.testing import CliRunner
from vdx_cli.cli import main

from tests.support.registry import temp_vhost
from vdx.broker import provision


def test_demo_runs_the_whole_exchange_and_leaves_nothing_behind(tmp_path, monkeypatch):
    with temp_vhost():  # skips (or fails under CI) without the management API
        pass
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    before = {t.name for t in threading.enumerate()}
    api = provision.ManagementApi(provision.BrokerSettings.from_env())
    kept = {v["name"] for v in api.get("vhosts")}  # an earlier `vdx demo --keep`'s stay
    result = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("receipt accepted", "acknowledged it over VXP", "sent 01 (arrived)",
                     "received statuses 01, 03, 06", "signature.digest_mismatch",
                     "ledger intact", "removed"):
        assert expected in out, expected
    assert "Traceback" not in out
    # nothing left running or lying around
    assert not [t for t in threading.enumerate() if t.name not in before and t.is_alive()
                and t.name.startswith("vdx-")]
    assert not list(tmp_path.glob("vdx-demo-*"))
    assert not [v for v in api.get("vhosts")
                if v["name"].startswith("vdx-demo-") and v["name"] not in kept]
    assert not provision.account_exists(api, "000.00.00.G22")
