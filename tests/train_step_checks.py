"""The bit-exactness check of the generated training step: the interpreter of the lowered
module vs the C harness's output (loss bits, FNV-1a hash of every parameter)."""

from __future__ import annotations

import numpy as np

from tinymlir.codegen import build as B
from tinymlir.interpreter.train_impls import TrainState


def interpreter_run(module, x: np.ndarray, labels, lr: float) -> tuple[list[float], dict[str, np.ndarray]]:
    state = TrainState(module)
    losses = [state.train_step(x, np.int32(label), np.float32(lr)) for label in labels]
    return losses, state.params


def assert_same(run: B.TrainRun, losses: list[float], params: dict[str, np.ndarray]) -> None:
    assert run.status == [0] * len(losses)
    assert np.array_equal(np.float32(run.loss).view(np.uint32), np.float32(losses).view(np.uint32)), \
        f"losses differ: C {run.loss}, interpreter {losses}"
    assert set(run.params) == set(params)
    differ = [name for name, a in params.items()
              if run.params[name] != (a.nbytes, B.fnv1a(np.ascontiguousarray(a).tobytes()))]
    assert not differ, f"{len(differ)} of {len(params)} params differ after {len(losses)} steps: {differ[:5]}"
