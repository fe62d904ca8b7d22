#!/usr/bin/env bash
# Issue 6: every GPU measurement in ONE call on a lent device machine (torch from the machine, svbench from source,
# no network). Everything is written to a work folder -- the run folder (results.jsonl, table.md/csv, meta.json),
# the report (md/csv/html/png), nvidia-smi and the environment -- and packed into $OUT/gpu-results.tar.gz; the
# device tool returns at most 8 files, 2 folders deep, so only the archive and a few top-level copies (env.txt,
# nvidia-smi.txt, run.log, results.jsonl, report.md) go directly under $OUT. Commit the unpacked archive under
# reports/gpu/<device>/.
#
#   device tool:   SVBENCH_GIT_SHA=<sha of HEAD, typed out> bash scripts/gpu-measure.sh
#                  (OUT is set by the tool; timeout_s >= budget + 60; the copy there may have no .git, so pass the
#                  commit in the command -- type the SHA itself, the device machine has no git history)
#   CPU dry run:   OUT=/tmp/g SVBENCH_DEVICE=cpu SVBENCH_SUITE=tests/data/gpu-dry-run.yaml bash scripts/gpu-measure.sh
#
# The suite is cut after SVBENCH_BUDGET_S seconds (SIGINT: the runner keeps every finished cell and exits 130);
# the report is written from whatever finished.
set -u
OUT=${OUT:?set OUT to the folder that should receive the results}
SUITE=${SVBENCH_SUITE:-suites/sv-speed-gpu-quick.yaml}
DEVICE=${SVBENCH_DEVICE:-cuda}
BUDGET=${SVBENCH_BUDGET_S:-480}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SVBENCH_GIT_SHA="${SVBENCH_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
mkdir -p "$OUT"
WORK=${SVBENCH_WORK:-$(mktemp -d)}
mkdir -p "$WORK"
start=$(date +%s)

{ nvidia-smi 2>&1 || echo "nvidia-smi: not available"; } > "$WORK/nvidia-smi.txt"
"$PY" - > "$WORK/env.txt" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
    print("tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "tf32 cudnn", torch.backends.cudnn.allow_tf32)
PYEOF
cat "$WORK/env.txt"

TASKS=${SVBENCH_TASKS:-}  # e.g. SVBENCH_TASKS=networks: only these tasks of the suite
timeout --signal=INT --kill-after=30 "$BUDGET" "$PY" -m svbench run "$SUITE" --device "$DEVICE" --out "$WORK/runs" \
    ${TASKS:+--tasks "$TASKS"} --no-progress > "$WORK/run.log" 2>&1
rc=$?
echo "svbench run exit code: $rc (124/130: cut at the ${BUDGET}s budget; 1: some cell failed, see errors.log; finished cells are kept)" | tee -a "$WORK/run.log"
tail -n 5 "$WORK/run.log"

run_dir=$(find "$WORK/runs" -name results.jsonl -printf '%h\n' 2>/dev/null | head -n 1)
if [ -n "$run_dir" ]; then
    "$PY" -m svbench report "$run_dir" --out "$WORK/report" > "$WORK/report.log" 2>&1 || cat "$WORK/report.log"
    ls "$WORK/report" 2>/dev/null
else
    echo "no results were written"
fi
echo "total $(( $(date +%s) - start )) s" | tee -a "$WORK/run.log"

tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" .
for f in env.txt nvidia-smi.txt run.log report/report.md; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
[ -n "$run_dir" ] && cp "$run_dir/results.jsonl" "$OUT/"
ls -la "$OUT"
