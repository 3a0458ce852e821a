"""``python -m edgekit``: the same as the ``edgekit`` command."""

from edgekit.cli import entry

entry()
