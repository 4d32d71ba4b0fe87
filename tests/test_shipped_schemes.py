"""The scheme files in schemes/ (the paper's sparse updates) select what they say."""

import re
import subprocess
from pathlib import Path

import pytest
from shared_models import shared_model

SCHEMES = sorted((Path(__file__).resolve().parents[1] / "schemes").glob("*.scheme"))


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda p: p.stem)
def test_scheme_selects_its_layers(scheme):
    model = shared_model(re.sub(r"-\d+kb$", "", scheme.stem) + "-int8.onnx")
    text = scheme.read_text()
    bias_last = int(re.search(r"bias last (\d+)", text).group(1))
    weights = {int(layer) for layer in re.findall(r"(\d+):[\d.]+", text)}
    pipeline = f'fuse-qdq,autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme}"}}'
    ir = subprocess.run(["tinymlir-opt", str(model), "-p", pipeline], capture_output=True, text=True, check=True).stdout
    trainable = set(re.findall(r"train\.param @layer(\d+)\.(weight|bias) trainable", ir))
    classifier = max(int(layer) for layer, _ in re.findall(r"train\.param @layer(\d+)\.(weight|bias)", ir))
    want = {(str(i), "bias") for i in range(classifier - bias_last, classifier + 1)}
    want |= {(str(i), "weight") for i in weights | {classifier}}
    assert trainable == want
