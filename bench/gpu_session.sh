#!/usr/bin/env bash
# The prepared GPU run of the finetune benchmark, for a machine lent for a few minutes (one H100/H200) whose image
# has torch, transformers, peft and accelerate but none of bitsandbytes, TRL, datasets or liger-kernel and no
# network: their wheels travel with the working tree in .whl/ (not tracked; make it here first):
#
#   bench/gpu_session.sh wheels          # pip download into .whl/ the versions constraints.txt pins (~58 MB)
#   bench/gpu_session.sh issue           # on the GPU: issue 10's table at 0.5B and 8B (~9 min)
#   bench/gpu_session.sh more            # on the GPU: the 1B shape's table, 0.5B ablations (~8 min)
#   bench/gpu_session.sh profile         # on the GPU: where a 0.5B step's time goes, ours and TRL's (~3 min)
#   bench/gpu_session.sh table           # on the GPU: the whole default table, three shapes, every arm (~9 min)
#
# A session has 15 minutes of device time, the machine's start included: `issue` first (the figures issue 10 is
# judged on), then `more` in what is left. Results go to $OUT (the device's return folder) or
# bench/results/gpu-session/. Each stage stays under the 10 minutes a device call may take, and each shape runs
# under a timeout that keeps the arms it finished (the JSON is rewritten after every arm).
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
issue | more | profile | table) ;;
*)
  sed -n '2,16p' "$0"
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
issue)
  # 0.5B: ours against TRL's defaults, our padded path and TRL's tuned arms (padding-free + liger; padded + liger:
  # TRL's best is the faster), then ours with the layers compiled (compile_layers: the host-bound small shapes are
  # where it should tell; last, so its compiling cannot cost the table an arm; if it wins, it becomes the
  # default); 8B: ours (MFU), ours on full-length batches (8 x 2,048 tokens: the 24 GiB target), TRL's defaults
  shape qwen0.5b 290 --steps 20 --warmup 4 --examples 160 --skip-attention \
    --arms "finetune,trl_default,finetune_padded,trl_best,trl_liger,finetune:compile_layers=true"
  shape llama8b 270 --steps 4 --warmup 1 --examples 64 --skip-attention \
    --arms "finetune,finetune:full_length,trl_default"
  ;;
more)
  # 1B: the table's arms and ours compiled; then at 0.5B ours without the Trainer's autocast (LoRA in float32, as
  # before it), ours with liger-kernel's layer kernels, and TRL compiled (whole model; last: on the CPU its
  # compiling took minutes)
  shape llama1b 280 --steps 16 --warmup 4 --examples 128 --skip-attention \
    --arms "finetune,trl_default,finetune_padded,trl_best,trl_liger,finetune:compile_layers=true"
  shape qwen0.5b 200 --steps 20 --warmup 4 --examples 160 --skip-attention \
    --arms "finetune,finetune:autocast=false,finetune:liger_kernels=true,trl_compile"
  ;;
profile)
  # device against host time per operator over two steps (a profiled arm's figures carry the profiler's cost)
  shape qwen0.5b 200 --steps 8 --warmup 4 --examples 64 --skip-attention --arms "finetune:profile,trl_default:profile"
  ;;
table)
  shape qwen0.5b 180 --steps 12 --warmup 4 --examples 128
  shape llama1b 160 --steps 12 --warmup 4 --examples 128 --skip-attention
  shape llama8b 230 --steps 4 --warmup 1 --examples 64 --skip-attention \
    --arms finetune,finetune:full_length,trl_default,finetune:compile_layers=true
  ;;
esac
echo "== done $(date +%T); results in $OUT"
