"""Every ```python block of README.md runs as written after `make convert`.

The sample is built by the Makefile's own ``convert`` recipe (``make -C REPO convert``) into a
temporary ``data/sample``; each block then runs in a fresh interpreter with that temporary
directory as the working directory, so the README's relative paths (``data/sample/train``)
mean what they mean after ``make convert`` in a checkout. Blocks run separately, in README
order: each must stand on its own, as a reader would paste it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def readme_python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks of a Markdown text, in order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


BLOCKS = readme_python_blocks((REPO / "README.md").read_text())


def test_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python block: this test would check nothing"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs_as_written(after_make_convert: Path, index: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=after_make_convert, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"README python block {index} failed:\n{BLOCKS[index]}\n{proc.stderr[-3000:]}"
