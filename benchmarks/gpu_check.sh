#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run (a few minutes on one H100/H200).
#
#   bash benchmarks/gpu_check.sh [--device DEVICE] [--quick] [OUTDIR]
#
# 1. tests/test_gpu.py (pytest -m gpu): train-lora in bf16 with SNAC on the GPU, gradient checkpointing,
#    SNAC codes batched vs one clip at a time vs CPU, streaming decode vs CPU, and training/serving
#    token-for-token agreement through LocalEngine, all on the GPU.
# 2. benchmarks/bench_train.py --only snac: batched SNAC encoding vs one clip at a time (goal >= 2x).
# 3. benchmarks/bench_decode.py: streaming decode capacity (largest number of concurrent streams that all
#    stay real time, first-audio p50/p95), aggregate audio s/s at 1/4/16/64 streams, one stream vs the
#    public reference; 3 interleaved rounds each.
#
# Logs go to OUTDIR (default $OUT if set, else gpu-check/): env.txt and one .log per step. If .whl/ holds
# wheels (benchmarks/gpu_wheels.sh), they are installed first into a private folder, for machines whose
# Python has CUDA PyTorch but not this project's other packages. `--device cpu --quick` rehearses the whole
# script on a machine without a GPU. Exit status: 0 when every step passed.
set -uo pipefail

device=cuda
quick=0
out=${OUT:-gpu-check}
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) out=$1; shift ;;
    esac
done
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2  # absolute: the script moves to the repo root
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python3}

if compgen -G ".whl/*.whl" > /dev/null; then
    site=${TMPDIR:-/tmp}/voicelab-gpu-site
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || { echo "gpu_check.sh: installing .whl/ failed" >&2; exit 2; }
    export PYTHONPATH=$site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
    date -u
    nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    $python -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

failed=()
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember failures, go on
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc"
    [[ $rc -eq 0 ]] || failed+=("$name")
}

if [[ $quick -eq 1 ]]; then
    clips=(--clips 4 --clip-seconds 1 2 --rounds 3)
    decode=(--seconds 1 --max-streams 4 --aggregate 1 4 --aggregate-seconds 0.5)
else
    clips=(--clips 64 --clip-seconds 3 13 --rounds 3)
    decode=(--seconds 4 --max-streams 256 --aggregate 1 4 16 64 --aggregate-seconds 2)
fi
step test_gpu $python -m pytest -m gpu --gpu-device "$device" tests/test_gpu.py -v -rP -p no:cacheprovider
step bench_train_snac $python benchmarks/bench_train.py --only snac --device "$device" "${clips[@]}"
step bench_decode $python benchmarks/bench_decode.py --device "$device" --rounds 3 "${decode[@]}"

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "gpu_check.sh: failed: ${failed[*]} (logs in $out/)"
    exit 1
fi
echo "gpu_check.sh: all steps passed (logs in $out/)"
