"""Helpers for the never-destroy tests: a tree snapshot and the exit-2-one-paragraph check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def snapshot(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, tuple[str, str]]:
    """Every entry under ``root`` (links not followed): kind plus content hash or link target."""
    out: dict[str, tuple[str, str]] = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skipped]
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            if p in skipped:
                continue
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", "")
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return out


def assert_refused(res: Any, *needles: str) -> None:
    """Exit code 2, one paragraph on stderr naming ``needles``, no traceback (``res``: a
    ``CompletedProcess`` or conftest's ``Ran``)."""
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in err, err
    assert err.startswith("error:") and "\n\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
