"""Training checkpoints that hold only tensors and plain Python values.

A checkpoint is untrusted input: it is loaded with ``torch.load(weights_only=True)``, which
never runs pickled code, and its shape is checked before anything uses it. RNG states are
stored as tensors and plain types (numpy's generator state as an int64 tensor of its keys),
so nothing but ``weights_only`` content is ever written.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shards import FormatError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

# key -> type every checkpoint written by train.loop has.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "step": int, "epoch": int, "sampler": dict, "model": dict, "optimizer": dict, "scheduler": dict,
    "rng": list, "stats": dict,
}


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy, Python (and CUDA) RNG states as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [int(version), list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, ck: dict[str, Any]) -> None:
    """Write ``ck`` to ``path`` atomically (temporary file, fsync, rename), never through a link."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        os.unlink(tmp)  # a stale temporary (or a link planted there) is replaced, not written through
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        torch.save(ck, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling code, and check its keys.

    Raises:
        FormatError: the file is corrupt, truncated, holds anything but tensors and plain
            values (a crafted pickle), or lacks a key; the message names the file.
    """
    again = "Delete it (or move it away) to start over, or point --out at the run that wrote it."
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read an untrusted file is one clear error
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise FormatError(
            f"{path}: not a usable training checkpoint: corrupt, truncated, or holding objects other than "
            f"tensors and plain values (which are never unpickled) ({type(exc).__name__}: {first}). {again}"
        ) from None
    if not isinstance(ck, dict):
        raise FormatError(f"{path}: not a training checkpoint (a {type(ck).__name__}, not a mapping). {again}")
    for key, kind in _REQUIRED.items():
        if not isinstance(ck.get(key), kind) or isinstance(ck.get(key), bool):
            raise FormatError(f"{path}: not a training checkpoint of this trainer: key {key!r} is missing or not a "
                              f"{getattr(kind, '__name__', kind)}. {again}")
    return ck
