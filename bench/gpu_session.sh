#!/usr/bin/env bash
# The prepared GPU run of the finetune benchmark, for a machine lent for a few minutes (one H100/H200) whose image
# has torch, transformers, peft and accelerate but none of bitsandbytes, TRL, datasets or liger-kernel and no
# network: their wheels travel with the working tree in .whl/ (not tracked; make it here first):
#
#   bench/gpu_session.sh wheels          # pip download into .whl/ the versions constraints.txt pins (~58 MB)
#   bench/gpu_session.sh small           # on the GPU: the 0.5B shape's ablations and profiles (~6 min)
#   bench/gpu_session.sh large           # on the GPU: the 8B shape's ablations (~6 min)
#   bench/gpu_session.sh table           # on the GPU: the whole table, three shapes, every arm (~8 min)
#
# Results go to $OUT (the device's return folder) or bench/results/gpu-session/. Each stage stays under the
# 10 minutes a device call may take; run them in separate calls.
set -u -o pipefail
cd "$(dirname "$0")/.."
stage=${1:-}
OUT=${OUT:-bench/results/gpu-session}

pins() { grep -iE "^($(echo "$*" | tr ' ' '|'))==" constraints.txt; }

case "$stage" in
wheels)
  # the packages the device image lacks (and the transformers/peft this project tested), without their
  # dependencies, which the image has, for the device's Python (DEVICE_PYTHON, 3.12 in its image: multiprocess
  # has a wheel per Python version); liger-kernel is not pinned (an optional extra)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" -d .whl \
    $(pins bitsandbytes trl datasets dill multiprocess fsspec transformers peft) liger-kernel==0.8.5 && du -sh .whl
  exit $?
  ;;
small | large | table) ;;
*)
  sed -n '2,13p' "$0"
  exit 2
  ;;
esac

mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 9
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
B="python3 bench/bench_finetune.py --device cuda --skip-loss --profile-dir $OUT/profiles"

shape() {  # shape, seconds, then the benchmark's arguments
  local name=$1 limit=$2
  shift 2
  echo "== $name $(date +%T)"
  timeout "$limit" $B --shape "$name" --out "$OUT/$stage-$name.json" "$@" 2>&1 | grep -v -E "Warning|^ +\"" |
    tail -25 | tee "$OUT/$stage-$name.log"
}

case "$stage" in
small)
  # 20 timed steps (the first runs timed 8, and moved 12-24 % between calls): ours against TRL's defaults,
  # without the Trainer's autocast (LoRA in float32, as before it) and with liger-kernel's layer kernels;
  # then where the step time goes, device against host time per operator
  shape qwen0.5b 480 --steps 24 --warmup 4 --examples 192 --skip-attention \
    --arms "finetune,finetune:autocast=false,trl_default,finetune:liger_kernels=true,finetune:profile,trl_default:profile"
  ;;
large)
  # MFU at 8B: the same ablations
  shape llama8b 480 --steps 4 --warmup 1 --examples 64 --skip-attention \
    --arms "finetune,finetune:autocast=false,trl_default,finetune:liger_kernels=true,finetune:profile"
  ;;
table)
  shape qwen0.5b 200 --steps 12 --warmup 4 --examples 128
  shape llama1b 170 --steps 12 --warmup 4 --examples 128 --skip-attention
  shape llama8b 170 --steps 4 --warmup 1 --examples 64 --skip-attention --arms finetune,trl_default
  ;;
esac
echo "== done $(date +%T); results in $OUT"
