#!/usr/bin/env bash
# The GPU check in one go, under a time limit, for a machine with a GPU (see README, Training).
#
#   bash benchmarks/gpu_check.sh [OUTDIR]      # OUTDIR: default $OUT if set, else out/gpu_check
#
# Environment: LIMIT  seconds for everything (default 540; the 7B config needs ~14 GB of disk
#                     for its random weights and a few minutes: size LIMIT to leave a rerun),
#              PYTHON interpreter with torch (CUDA), transformers, peft, h5py, tokenizers, pyyaml,
#                     joblib, tqdm, psutil (default python3). Nothing is downloaded.
#              GPU_CHECK_ARGS extra arguments for gpu_check.py (the test suite passes --tiny).
# Writes OUTDIR/env.txt (GPU, driver, versions, load), OUTDIR/gpu_check.json (the report,
# rewritten after each config, so a timeout keeps what was measured) and OUTDIR/gpu_check.log.
# A config whose peak reserved memory is over 22 GiB is checked once more with half the
# micro-batch and twice the accumulation (same global batch) if time is left:
# OUTDIR/gpu_check_<config>_halved.json.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-out/gpu_check}}
LIMIT=${LIMIT:-540}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
left() { echo $((LIMIT - ($(date +%s) - start))); }

{
  date -u; uptime; nproc; free -g | head -2; df -h "${TMPDIR:-/tmp}" | tail -1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c 'import sys, torch, transformers, peft; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__)'
} >"$OUTDIR/env.txt" 2>&1
cat "$OUTDIR/env.txt"
if ! "$PY" -c 'import torch, transformers, peft, h5py, tokenizers, yaml, joblib, tqdm, psutil, numpy' 2>>"$OUTDIR/env.txt"; then
  echo "gpu_check.sh: a package is missing (see $OUTDIR/env.txt); carry it as a wheel" >&2
  exit 3
fi

per_config=$(( $(left) - 30 )); [ "$per_config" -ge 60 ] || per_config=60
# shellcheck disable=SC2086  # GPU_CHECK_ARGS is a list of arguments
timeout -k 30 "$(left)" "$PY" benchmarks/gpu_check.py --json --out-json "$OUTDIR/gpu_check.json" \
  --config-timeout "$per_config" ${GPU_CHECK_ARGS:-} 2> >(tee "$OUTDIR/gpu_check.log" >&2) >/dev/null
rc=$?
echo "gpu_check.sh: exit $rc after $(( $(date +%s) - start )) s"
[ -f "$OUTDIR/gpu_check.json" ] && cat "$OUTDIR/gpu_check.json"

# Configs that did not fit: half the micro-batch, twice the accumulation, if time is left.
halve=$(mktemp)
"$PY" - "$OUTDIR/gpu_check.json" <<'EOF' >"$halve" 2>/dev/null
import json, sys
for c in json.load(open(sys.argv[1]))["configs"]:
    if c.get("fits_24gib") is False and c.get("batch_size", 1) > 1:
        print(c["config"], c["batch_size"] // 2, c["grad_accum"] * 2, c["name"])
EOF
while read -r cfg batch accum name; do
  if [ "$(left)" -lt 150 ]; then echo "gpu_check.sh: no time left to recheck $name" >&2; break; fi
  echo "gpu_check.sh: $name did not fit; checking --batch-size $batch --grad-accum $accum" >&2
  # shellcheck disable=SC2086
  timeout -k 30 "$(left)" "$PY" benchmarks/gpu_check.py --json --configs "$cfg" --batch-size "$batch" \
    --grad-accum "$accum" --out-json "$OUTDIR/gpu_check_${name}_halved.json" ${GPU_CHECK_ARGS:-} \
    2>>"$OUTDIR/gpu_check.log" >/dev/null
  cat "$OUTDIR/gpu_check_${name}_halved.json" 2>/dev/null
done <"$halve"
rm -f "$halve"
exit $rc
