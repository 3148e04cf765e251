"""The ``vdx`` command's groups, one module per role (``cli.py`` only assembles them).

``common`` holds what every group shares: the one-line failure, the group class that turns
a :class:`vdx.errors.VdxError` into that line, option callbacks and file helpers. Each
other module defines its groups with ``@click.group``/``@click.command`` and imports what
is heavy (signxml, pika, SQLAlchemy) inside the commands that need it.
"""
