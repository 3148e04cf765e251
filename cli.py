"""The ``vdx`` command: assembles the command groups of :mod:`vdx.commands` and the
adapters' (:mod:`vdx_adapters.commands`). Nothing else lives here.

Exit codes: 0 success, 1 a checked thing is invalid or an operation was refused (the
reason is one line on stderr), 2 usage errors (click's own convention).
"""

from __future__ import annotations

import click
from vdx_adapters import commands as adapters

import vdx
from vdx.commands import ca, console, envelope, hub, node
from vdx.commands.common import VdxGroup


@click.group(cls=VdxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vdx.__version__, prog_name="vdx")
def main() -> None:
    """VDX hub: national edXML document exchange between government agencies."""


main.add_command(envelope.envelope_group)
main.add_command(ca.ca_group)
main.add_command(node.init)
main.add_command(node.node_group)
main.add_command(node.doctor)
main.add_command(hub.hub_group)
main.add_command(hub.receipts_group)
main.add_command(hub.document_group)
main.add_command(hub.audit_group)
main.add_command(console.console_group)
main.add_command(adapters.folder_group)
main.add_command(adapters.gateway_group)
main.add_command(adapters.demo)


if __name__ == "__main__":
    main()
