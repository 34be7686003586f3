"""``python -m sgc``: the same as the ``sgc`` command."""

from sgc.cli import app

app()
