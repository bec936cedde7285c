"""Child of test_threads: many threads read one ShardDataset while shards are evicted.

Usage: python _threads_child.py DATASET MAX_OPEN THREADS ROUNDS; prints "ok N" or exits 1.
Expected rows come from a second reader of the same directory with every shard open.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from loaders import ShardDataset


def main() -> int:
    path, max_open, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up early
    ref = ShardDataset(path)
    want = ref.__getitems__(np.arange(len(ref)))
    ds = ShardDataset(path, max_open_shards=max_open)
    starts = ds.shard_starts
    errors: list[str] = []
    done: list[int] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for k in range(rounds):
                if k % 3 == 0:  # one shard: the span gather, evicting the others
                    s = int(rng.integers(0, ds.num_shards))
                    if starts[s + 1] == starts[s]:
                        continue
                    idx = rng.integers(starts[s], starts[s + 1], size=64)
                else:  # many shards: more than max_open at once
                    idx = rng.integers(0, len(ds), size=64)
                got = ds.__getitems__(idx)
                for key in ("input_ids", "lengths", "labels"):
                    if not np.array_equal(got[key], want[key][idx]):
                        errors.append(f"thread {seed} round {k}: {key} differs")
                        return
                i = int(idx[0])
                item = ds[i]
                if not np.array_equal(item["input_ids"], want["input_ids"][i]) or item["labels"] != want["labels"][i]:
                    errors.append(f"thread {seed} round {k}: ds[{i}] differs")
                    return
                if k % 50 == 0:
                    ds.close()  # a close from any thread must wait for readers
            done.append(seed)  # list.append is atomic; += on a shared int can lose updates
        except Exception as exc:  # noqa: BLE001 - reported by the parent
            errors.append(f"thread {seed}: {exc.__class__.__name__}: {exc}")

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        print("\n".join(errors[:5]))
        return 1
    print("ok", len(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
