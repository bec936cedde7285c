"""``python -m convert``: see :mod:`convert.cli`."""

from .cli import run

run()
