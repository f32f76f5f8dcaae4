#!/usr/bin/env bash
# All 7B-scale GPU figures of issues 6 and 8 (B1, B2, B3) in one command, for one lent H100 (issue 19).
#
#   bash scripts/gpu_run.sh                                   # on the GPU machine ($OUT set there), ~9 min at most
#   SHAPES=tiny DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp/g bash scripts/gpu_run.sh   # CPU end-to-end check
#
# Steps, in order, each under its own `timeout` (seconds; model build included), each logging to $OUT/<step>.log:
#   b1_lora   bench_lora_step.py --shape real (Qwen2-7B, 4 x 2048, LoRA r=128): HF + peft vs avlm      LIMIT_B1=135
#   b2_av_b4  bench_av_step.py --shape real --batch 4 (VideoLLaMA2.1-7B-AV): baseline vs avlm        LIMIT_B2_B4=155
#   b2_av_b8  bench_av_step.py --shape real --batch 8 --only avlm                                    LIMIT_B2_B8=105
#   b3_infer  bench_infer.py --shape 7b --media memory --clips 32: runner at batch 16 vs one clip     LIMIT_B3=145
#             at a time (in-memory frames + waveform: no PyAV/decord; container decoding not measured)
# The limits sum to 540 s (+ 5 s kill grace each), inside the device tool's 600 s per command.
#
# A step that fails or hits its limit is recorded and the next one runs. Each script writes its figures with --json
# (partially after each measured path, so a step killed by its limit keeps what it measured); after every step
# $OUT/summary.json is rewritten: per step status (ok / failed / timeout), exit code, seconds, limit, command and
# its JSON ("result"). The step JSONs live only inside summary.json: the device tool returns at most 8 files from
# $OUT (here: 4 logs + summary.json). A table is printed at the end.
#
# Environment: OUT (default out/gpu_run), SHAPES real|small|tiny (default real), DEVICE (default cuda; cpu adds
# --threads 1 and fewer steps/clips), PYTHON (default python3), ONLY (comma-separated step names to run), LIMIT_*.
# Needs only torch, transformers, peft and what they import (no PyAV, decord, librosa, soundfile; no network).

set -u
OUT=${OUT:-out/gpu_run}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)  # before the cd below: a relative OUT is the caller's
cd "$(dirname "$0")/.." || exit 2

SHAPES=${SHAPES:-real}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
ONLY=${ONLY:-}
LIMIT_B1=${LIMIT_B1:-135}
LIMIT_B2_B4=${LIMIT_B2_B4:-155}
LIMIT_B2_B8=${LIMIT_B2_B8:-105}
LIMIT_B3=${LIMIT_B3:-145}
KILL_GRACE=5

case "$SHAPES" in
  real)  B1_SHAPE=real;  B2_SHAPE=real;  B3_SHAPE=7b;    STEPS_ARGS=();                       B3_ARGS=(--clips 32) ;;
  small) B1_SHAPE=small; B2_SHAPE=small; B3_SHAPE=small; STEPS_ARGS=(--warmup 1 --steps 2);   B3_ARGS=(--clips 4 --new-tokens 4) ;;
  tiny)  B1_SHAPE=tiny;  B2_SHAPE=tiny;  B3_SHAPE=tiny;  STEPS_ARGS=(--warmup 0 --steps 1);   B3_ARGS=(--clips 3 --new-tokens 4) ;;
  *) echo "SHAPES=$SHAPES: use real, small or tiny" >&2; exit 2 ;;
esac
COMMON=(--device "$DEVICE")
B3_EXTRA=(--batch-size 16)
if [[ "$DEVICE" == cpu* ]]; then
  COMMON+=(--threads 1)
  B3_EXTRA=(--batch-size 4 --num-workers 0)  # one process on a shared CPU box
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
: > "$WORK/steps.tsv"

write_summary() {  # $1: "final" prints the table
  "$PYTHON" - "$OUT" "$WORK" "$SHAPES" "$DEVICE" "$STARTED" "${1:-}" <<'EOF'
import json, os, sys, time
out, work, shapes, device, started, final = sys.argv[1:7]
steps = []
for line in open(os.path.join(work, "steps.tsv")):
    name, status, code, seconds, limit, command = line.rstrip("\n").split("\t")
    path = os.path.join(work, f"{name}.json")
    result = json.load(open(path)) if os.path.isfile(path) else None
    steps.append({"name": name, "status": status, "exit_code": int(code), "seconds": round(float(seconds), 1),
                  "limit_s": int(limit), "command": command, "log": f"{name}.log", "result": result})
summary = {"shapes": shapes, "device": device, "started": started,
           "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "final": bool(final),
           "all_ok": bool(steps) and all(step["status"] == "ok" for step in steps), "steps": steps}
with open(os.path.join(out, "summary.json.tmp"), "w") as file:
    json.dump(summary, file, indent=2)
os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))
if not final:
    sys.exit(0)

def headline(result):
    if not result:
        return ""
    paths, ratio = result.get("paths", {}), result.get("ratio_avlm_over_baseline")
    parts = []
    for name, figures in paths.items():
        for key, unit in (("tokens_per_s", "tokens/s"), ("samples_per_s", "samples/s"), ("clips_per_s", "clips/s")):
            if key in figures:
                parts.append(f"{name} {figures[key]:.3g} {unit}")
        peak = figures.get("peak_allocated_gib", figures.get("peak_gib"))
        if peak is not None:
            parts[-1] += f" (peak {peak:.1f} GiB)"
    if ratio is not None:
        parts.append(f"ratio {ratio:.2f}x")
    return "; ".join(parts) + ("" if result.get("complete") else " [partial]")

print(f"\n{'step':<10} {'status':<8} {'rc':>4} {'seconds':>8}  figures")
for step in steps:
    print(f"{step['name']:<10} {step['status']:<8} {step['exit_code']:>4} {step['seconds']:>8.1f}  "
          f"{headline(step['result'])}")
print(f"summary: {os.path.join(out, 'summary.json')}")
EOF
}

run_step() {  # name limit script args...
  local name=$1 limit=$2 script=$3
  shift 3
  if [[ -n "$ONLY" && ",$ONLY," != *",$name,"* ]]; then
    return
  fi
  local command=("$PYTHON" "scripts/$script" "$@" --json "$WORK/$name.json")
  echo "== $name (limit ${limit} s): ${command[*]}"
  local start end code status
  start=$(date +%s.%N)
  {
    echo "# ${command[*]}"
    echo "# limit ${limit} s, started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$OUT/$name.log"
  timeout --kill-after="$KILL_GRACE" "$limit" "${command[@]}" >> "$OUT/$name.log" 2>&1
  code=$?
  end=$(date +%s.%N)
  if [[ $code -eq 124 || $code -eq 137 ]]; then
    status=timeout
  elif [[ $code -ne 0 ]]; then
    status=failed
  elif ! grep -q '"complete": true' "$WORK/$name.json" 2>/dev/null; then
    status=failed  # exited 0 without its complete JSON
  else
    status=ok
  fi
  local seconds
  seconds=$(awk "BEGIN {printf \"%.1f\", $end - $start}")
  echo "# exit code $code ($status) after $seconds s" >> "$OUT/$name.log"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$code" "$seconds" "$limit" "${command[*]}" \
    >> "$WORK/steps.tsv"
  echo "   $status (exit code $code, $seconds s)"
  if [[ $status != ok ]]; then
    tail -n 15 "$OUT/$name.log" | sed 's/^/   | /'
  fi
  write_summary
}

if command -v nvidia-smi > /dev/null && [[ "$DEVICE" == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader
fi
echo "gpu_run: SHAPES=$SHAPES DEVICE=$DEVICE PYTHON=$PYTHON OUT=$OUT"

run_step b1_lora "$LIMIT_B1" bench_lora_step.py --shape "$B1_SHAPE" "${COMMON[@]}" "${STEPS_ARGS[@]}"
run_step b2_av_b4 "$LIMIT_B2_B4" bench_av_step.py --shape "$B2_SHAPE" --batch 4 "${COMMON[@]}" "${STEPS_ARGS[@]}"
run_step b2_av_b8 "$LIMIT_B2_B8" bench_av_step.py --shape "$B2_SHAPE" --batch 8 --only avlm "${COMMON[@]}" \
  "${STEPS_ARGS[@]}"
run_step b3_infer "$LIMIT_B3" bench_infer.py --shape "$B3_SHAPE" --media memory "${B3_ARGS[@]}" "${B3_EXTRA[@]}" \
  "${COMMON[@]}"

write_summary final
