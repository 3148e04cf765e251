"""The gateway and the nodes' receipts queues: its broker account reads them, and
``vdx init`` brings an account from before them up to date."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from vdx_adapters.gateway import systems as gateway_systems
from vdx_adapters.gateway import tables as gateway

from tests.support.hub import running_hub
from vdx.broker import provision

pytestmark = pytest.mark.rabbitmq


def test_the_gateway_account_reads_its_nodes_inboxes_and_receipts_queues_only():
    read = provision.gateway_permissions(["000.00.00.G22", "000.00.00.H41"]).read
    for code in ("000.00.00.G22", "000.00.00.H41"):
        assert re.match(read, provision.inbox_queue(code))
        assert re.match(read, provision.receipts_queue(code))
    assert not re.match(read, provision.receipts_queue("000.00.00.H49"))
    assert provision.gateway_permissions([]).read == "^$"


def test_init_gives_an_existing_gateway_account_its_nodes_receipts_queues(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22",)) as hub:
        assert not gateway_systems.refresh_account(hub.admin)  # no account: none made
        code = hub.agency("G22").code
        gateway_systems.add_system(hub.admin, "dms.before", (code,),
                                   credentials_file=tmp_path / "gw.json")
        path = (f"permissions/{quote(hub.vhost, safe='')}/"
                f"{quote(gateway.gateway_user(hub.vhost), safe='')}")
        # The rights of a release before receipts queues: the inbox only.
        hub.admin.api.put(path, {"configure": "^$", "write": r"^vdx\.submit$",
                                 "read": f"^({re.escape(provision.inbox_queue(code))})$"})
        assert gateway_systems.refresh_account(hub.admin)  # what `vdx init` runs
        read = hub.admin.api.get(path)["read"]
        assert read == provision.gateway_permissions([code]).read
        assert re.match(read, provision.receipts_queue(code))
