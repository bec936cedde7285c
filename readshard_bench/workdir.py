"""Directories the benchmarks may delete inside: only ones they made themselves.

The benches take a typed directory (``--workdir``, ``--cache``) and later delete what they
build there (old outputs, the Hugging Face cache). :func:`claim_workdir` makes that safe: a
directory is used only if it is new, empty or already carries this module's marker, so a
typed path that holds the user's own files is refused before anything is removed, and a
symbolic link is never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MARKER", "claim_workdir"]

MARKER = ".readshard-bench"


def claim_workdir(path: str | os.PathLike[str], flag: str = "--workdir") -> Path:
    """Create or accept ``path`` as a bench-owned directory and mark it; return it.

    Raises:
        SystemExit: ``path`` is a symbolic link or not a directory, or a non-empty directory
            without the marker (files the bench did not make); the message names it and ``flag``.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(parents=True)
    else:
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise SystemExit(f"bench: {flag} {path} is a symbolic link or not a directory; give a real directory "
                             "(the bench deletes what it builds there and never follows links)")
        if not (path / MARKER).is_file() and any(path.iterdir()):
            raise SystemExit(f"bench: {flag} {path} holds files this bench did not make; give an empty or new "
                             "directory (the bench deletes what it builds there)")
    (path / MARKER).touch()
    return path
