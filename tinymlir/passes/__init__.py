"""tinymlir's passes, keyed by their command-line name; each getter imports lazily.

Add a pass here with the same key as its `name` (tests/test_registry.py checks it).
"""

from collections.abc import Callable

from xdsl.passes import ModulePass


def get_tinymlir_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    def fuse_qdq():
        from tinymlir.passes.fuse_qdq import FuseQDQPass

        return FuseQDQPass

    def fold_batch_norm():
        from tinymlir.passes.fold_batch_norm import FoldBatchNormPass

        return FoldBatchNormPass

    def fold_constants():
        from tinymlir.passes.fold_constants import FoldConstantsPass

        return FoldConstantsPass

    def quantize_ptq():
        from tinymlir.passes.quantize_ptq import QuantizePTQPass

        return QuantizePTQPass

    def autodiff():
        from tinymlir.passes.autodiff import AutodiffPass

        return AutodiffPass

    return {
        "autodiff": autodiff,
        "fuse-qdq": fuse_qdq,
        "fold-batch-norm": fold_batch_norm,
        "fold-constants": fold_constants,
        "quantize-ptq": quantize_ptq,
    }
