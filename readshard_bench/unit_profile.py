"""Where a conversion's time goes: one unit's steps, and the fixed start-up.

Run: ``python -m readshard_bench.unit_profile [--fragments-per-species 8000] [--repeats 5]
[--workdir DIR] [--json]``.

On the convert bench's simulated reads (METAGENE-1, default header format), in this process
and one unit at a time (no threads, so no step waits on another), each full unit of 65,536
reads goes through the public steps of :func:`convert.unit.convert_unit` separately:

* ``read``: :func:`convert.fastx.unit_bytes` (the worker reads its byte range);
* ``parse``: :func:`convert.fastparse.parse_default` (split, check, label; numba);
* ``encode``: the tokenizer's ``encode`` (the exact fast BPE);
* ``write``: :func:`shards.write_shard` (HDF5 image, sha256, write), without fsync
  as the converter's workers write;
* ``fsync``: :func:`shards.fsync_file` of that shard, dropping its pages, which the
  converter's own thread does while its workers go on (not part of ``unit``);
* ``unit``: the whole :func:`convert.unit.convert_unit`; ``rest`` is ``unit`` minus the
  steps (label columns, quarantine parts, the unit record, renames).

Medians over units and repeats, in ms per unit. ``scan_mb_per_s``: the parent's pass that
cuts the whole file into units (:func:`convert.fastx.iter_units`, file read right before).
``startup`` runs fresh interpreters: ``python
-c pass``, ``import convert.pipeline`` (numpy, h5py, numba) and that plus numba's first load
of the compiled parse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from readshard_bench.workdir import claim_workdir

__all__ = ["main", "unit_steps", "startup"]

_FIRST_LOAD = (
    "import time, numpy as np; t = time.perf_counter(); import convert.pipeline; "
    "from convert.fastparse import parse_default; from convert.fastx import Unit; "
    "d = b'>lbl|1|||x/1\\nACGT\\n'; parse_default(Unit('x', 0, 0, 1, 0, d, 'fasta'), d, np.arange(3))"
)


def _ms(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t)


def unit_steps(train: Path, mapping: Path, staging: Path, repeats: int, per_unit: int = 65536) -> dict[str, float]:
    """Median ms per full unit of ``per_unit`` reads, of each step (see the module docstring)."""
    from convert import fastparse
    import shards as fmt
    from convert.fastx import iter_units, unit_bytes
    from convert.labels import DEFAULT_HEADER_REGEX, read_mapping
    from convert.tokenizers import load_tokenizer
    from convert.unit import Settings, convert_unit

    lm = read_mapping(mapping)
    tok = load_tokenizer("metagene-1")
    known = np.sort(np.asarray(lm.class_ids, dtype=np.int64))
    units = [u for u in iter_units(train, 0, per_unit) if u.records == per_unit]
    if not units:
        raise SystemExit(f"{train} holds no full unit of {per_unit:,} reads: simulate more fragments")
    def settings(run: int) -> Settings:
        # A new staging directory per pass: the converter writes new files, and replacing an
        # existing file makes ext4 flush it at the rename (a cost no conversion pays).
        where = staging / f"pass-{run}"
        (where / ".units").mkdir(parents=True, exist_ok=True)
        return Settings(tokenizer="metagene-1", max_length=48, header_regex=DEFAULT_HEADER_REGEX, label_map=lm,
                        layout="mmap", compression="gzip", on_bad_record="skip", staging=str(where),
                        tokenizer_info=tok.info, dataset_id="00" * 16, sync=False)

    times: dict[str, list[float]] = {k: [] for k in ("read", "parse", "encode", "write", "fsync", "unit")}
    convert_unit(units[0], 0, settings(-1))  # compiled code and tables loaded before timing
    for run in range(repeats):
        s = settings(run)
        for i, u in enumerate(units):
            data = unit_bytes(u)
            times["read"].append(_ms(lambda: unit_bytes(u)))
            times["parse"].append(_ms(lambda: fastparse.parse_default(u, data, known)))
            p = fastparse.parse_default(u, data, known)
            times["encode"].append(_ms(lambda: tok.encode(p.seqs, p.offsets, 48)))
            ids, full = tok.encode(p.seqs, p.offsets, 48)
            n = ids.shape[0]
            vectors = {name: np.zeros(n, dtype=dtype) for name, dtype in fmt.ROW_VECTORS.items()}
            shard = Path(s.staging) / f"w-{i}.h5"
            times["write"].append(_ms(lambda: fmt.write_shard(
                shard, input_ids=ids, vectors=vectors, num_classes=lm.num_classes,
                tokenizer=tok.info, shard_index=i, dataset_id="00" * 16, sync=False)))
            times["fsync"].append(_ms(lambda: fmt.fsync_file(shard, drop_cache=True)))
            times["unit"].append(_ms(lambda: convert_unit(u, i, s)))
            fmt.fsync_file(Path(s.staging) / fmt.shard_name(i), drop_cache=True)  # as the converter does
    with open(train, "rb") as f:  # in page cache, as the converter finds it after its head probe
        while f.read(1 << 24):
            pass
    scan = [_ms(lambda: sum(1 for _ in iter_units(train, 0, per_unit))) for _ in range(repeats)]
    out = {k: statistics.median(v) for k, v in times.items()}
    out["scan_mb_per_s"] = train.stat().st_size / 1e3 / statistics.median(scan)
    out["rest"] = out["unit"] - sum(out[k] for k in ("read", "parse", "encode", "write"))
    out["units"] = len(units)
    return out


def startup(runs: int = 5) -> dict[str, float]:
    """Median seconds of fresh interpreters: bare, importing the converter, and its first numba load."""
    def run(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t

    out = {}
    for name, code in (("python", "pass"), ("imports", "import convert.pipeline"), ("first_numba_load", _FIRST_LOAD)):
        out[name] = statistics.median(run(code) for _ in range(runs))
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments-per-species", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", help="keep the reads here (new, empty or made by an earlier bench run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from sample.simulate import simulate

    work = claim_workdir(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="readshard-unit-profile-"))
    reads = work / f"reads-{args.fragments_per_species}"
    if not (reads / "train.fa").is_file():
        simulate(reads, fragments_per_species=args.fragments_per_species, seed=0, progress=False)
    with tempfile.TemporaryDirectory(dir=work) as staging:
        steps = unit_steps(reads / "train.fa", reads / "mapping.tsv", Path(staging), args.repeats)
    result = {"unit_ms": steps, "startup_s": startup()}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"per unit of 65,536 reads (median of {steps['units']} units x {args.repeats}), ms:")
        for k in ("read", "parse", "encode", "write", "rest", "unit"):
            print(f"  {k:<7}{steps[k]:8.1f}")
        print(f"  (fsync of the shard by the converter's own thread, beside the unit: {steps['fsync']:.1f})")
        print(f"scan of the whole input: {steps['scan_mb_per_s']:,.0f} MB/s")
        st = result["startup_s"]
        print(f"start-up, s: python {st['python']:.3f}, + imports {st['imports']:.3f}, "
              f"+ numba's first load {st['first_numba_load']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
