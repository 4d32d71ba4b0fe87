#!/usr/bin/env bash
# The end-to-end example: train a small CNN on scikit-learn's digits, export it to ONNX,
# quantize it to int8 with tinymlir-opt, and classify one test image with tinymlir-run.
# Everything goes to out/example/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY="$VIRTUAL_ENV/bin/python"; else PY=python3; fi
OUT=out/example
PIPELINE="fold-batch-norm,quantize-ptq{calibration=\"$OUT/calib.npy\"}"

step() { printf '\n$ %s\n' "$*"; }

step python -m tinymlir.examples.digits "$OUT"
"$PY" -m tinymlir.examples.digits "$OUT"

step tinymlir-opt "$OUT/digits_cnn.onnx" -p "'$PIPELINE'" -o "$OUT/digits_int8.mlir"
"$PY" -m tinymlir.tools.opt "$OUT/digits_cnn.onnx" -p "$PIPELINE" -o "$OUT/digits_int8.mlir"
echo "wrote $OUT/digits_int8.mlir ($(grep -c 'quant\.' "$OUT/digits_int8.mlir") lines with quant ops)"

# One test image as its own [1, 1, 16, 16] float32 .npy, and its label.
label="$("$PY" -c 'import sys, numpy as np
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
np.save(sys.argv[3], x[:1])
print(int(y[0]))' "$OUT/test_x.npy" "$OUT/test_y.npy" "$OUT/image0.npy")"

step tinymlir-run "$OUT/digits_int8.mlir" --input "$OUT/image0.npy"
result="$("$PY" -m tinymlir.tools.run "$OUT/digits_int8.mlir" --input "$OUT/image0.npy")"
echo "$result"
predicted="$(echo "$result" | sed -n 's/.*argmax \([0-9]*\).*/\1/p' | head -n1)"
echo
echo "int8 model: predicted class ${predicted:-?} for test image 0 (true label $label)"
