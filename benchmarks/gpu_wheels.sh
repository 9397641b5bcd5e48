#!/usr/bin/env bash
# Fetch, into .whl/, the wheels a GPU machine needs to run benchmarks/gpu_check.sh.
#
# The lent GPU machines (see docs/benchmarks.md, "GPU checks") have Python 3.12 with CUDA PyTorch,
# transformers, peft, accelerate, numpy, scipy, matplotlib, pytest and hypothesis, but none of this
# project's audio and serving packages, and no network. This downloads those (pure wheels or manylinux
# x86-64 builds, no dependencies resolved: the list below is the complete set missing there) at the
# versions installed in .venv, so the GPU run uses what the CPU tests use.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12 (the GPU machines' Python)
set -euo pipefail

pyver=${1:-3.12}
dest=.whl
python=.venv/bin/python
# Runtime packages missing from the GPU image, with the dependencies of theirs that are missing too.
missing=(
    snac                                              # SNAC codec (einops is there)
    soundfile cffi pycparser                          # WAV/FLAC I/O (libsndfile inside the wheel)
    soxr                                              # resampling
    librosa audioread pooch decorator platformdirs    # time stretch (server speed), librosa's imports
    pydub                                             # imported by voicelab.audio's fallback reader
    fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv annotated-types
    typing-inspection opentelemetry-api uvicorn       # the server (LocalEngine tests build its settings)
)

if [[ ! -x $python ]]; then
    echo "gpu_wheels.sh: $python not found: run \`make install\` first (versions are taken from .venv)" >&2
    exit 2
fi
mkdir -p "$dest"
rm -f "$dest"/*.whl
for name in "${missing[@]}"; do
    version=$($python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")
    $python -m pip download -qq --no-deps --only-binary=:all: --dest "$dest" \
        --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        "$name==$version"
done
echo "$(ls "$dest"/*.whl | wc -l) wheels, $(du -sh "$dest" | cut -f1), in $dest/ for Python $pyver"
