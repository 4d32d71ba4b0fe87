#!/usr/bin/env bash
# The main job on the bundled default: set up, then `tinymlir compile --train --run 5`:
# train a small CNN on scikit-learn's digits (numpy, a few seconds), export it to ONNX,
# quantize it to int8, build its on-device training step (autodiff, QAS, pruned backward,
# reordered in-place updates), lower it to CMSIS-NN + tinymlir's training kernels, write
# the C project to out/compile/, and run 5 training steps of the generated C on the host
# and, when the Arm toolchain and QEMU are installed, on an emulated Cortex-M4.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY="$VIRTUAL_ENV/bin/python"; else PY=python3; fi

printf '\n$ tinymlir compile --train --run 5 -o out/compile\n'
"$PY" -m tinymlir.tools.compile compile --train --run 5 -o out/compile
echo
echo "C project: out/compile (model.c, model.h, Makefile, runtime/, model.mlir, summary.txt, memory.png)"
