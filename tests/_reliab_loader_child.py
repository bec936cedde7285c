"""Child process for tests/test_reliability_workers.py: SIGKILL a DataLoader worker mid-epoch.

Usage: python tests/_reliab_loader_child.py DATASET START_METHOD
Prints one JSON line: how many batches arrived and what the main process raised.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch
from torch.utils.data import DataLoader

from loaders import ShardDataset, collate_batch


def main() -> int:
    path, method = sys.argv[1], sys.argv[2]
    ds = ShardDataset(path)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, collate_fn=collate_batch,
                        multiprocessing_context=method, generator=torch.Generator().manual_seed(0))
    total = len(loader)
    it = iter(loader)
    got = 0
    result = {"total_batches": total, "errors": [], "messages": [], "killed": None}

    def note(exc: BaseException) -> None:
        result["errors"].append(type(exc).__name__)
        result["messages"].append(str(exc))

    # torch's SIGCHLD handler raises asynchronously, wherever the main thread is, possibly
    # while an error from the receive itself is being handled: catch at two levels.
    try:
        try:
            for batch in it:
                got += 1
                if got == 3:
                    victim = it._workers[1].pid
                    result["killed"] = victim
                    os.kill(victim, signal.SIGKILL)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            note(exc)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except BaseException as exc:  # noqa: BLE001
        note(exc)
    result["batches"] = got
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
