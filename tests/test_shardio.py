"""Descriptor budget: every shard stays mapped when the hard limit allows it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import REPO


@pytest.mark.slow  # a child process
def test_budget_raises_soft_limit_and_caps_at_hard() -> None:
    code = textwrap.dedent(
        """
        import resource
        from loaders.handles import open_shard_budget
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
        print(open_shard_budget(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 600))
        print(open_shard_budget(5000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    budget, soft, hard = map(int, out[0].split())
    if hard >= 1256:
        assert budget == 1000 and soft == 1256
    capped, soft2 = map(int, out[1].split())
    assert soft2 == 600 and capped == 600 - 256
