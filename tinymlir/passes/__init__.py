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

    def qas():
        from tinymlir.passes.qas import QASPass

        return QASPass

    def autodiff():
        from tinymlir.passes.autodiff import AutodiffPass

        return AutodiffPass

    def convert_layout():
        from tinymlir.passes.convert_layout import ConvertLayoutPass

        return ConvertLayoutPass

    def convert_quant_to_cmsisnn():
        from tinymlir.passes.convert_quant_to_cmsisnn import ConvertQuantToCmsisNNPass

        return ConvertQuantToCmsisNNPass

    def sparse_update():
        from tinymlir.passes.sparse_update import SparseUpdatePass

        return SparseUpdatePass

    def prune_backward():
        from tinymlir.passes.prune_backward import PruneBackwardPass

        return PruneBackwardPass

    def plan_memory():
        from tinymlir.passes.plan_memory import PlanMemoryPass

        return PlanMemoryPass

    def reorder_update():
        from tinymlir.passes.reorder_update import ReorderUpdatePass

        return ReorderUpdatePass

    def int8_io():
        from tinymlir.passes.int8_io import Int8IOPass

        return Int8IOPass

    def split_sparse_params():
        from tinymlir.passes.split_sparse_params import SplitSparseParamsPass

        return SplitSparseParamsPass

    def convert_train_to_tk():
        from tinymlir.passes.convert_train_to_tk import ConvertTrainToTkPass

        return ConvertTrainToTkPass

    return {
        "autodiff": autodiff,
        "convert-train-to-tk": convert_train_to_tk,
        "split-sparse-params": split_sparse_params,
        "int8-io": int8_io,
        "convert-layout": convert_layout,
        "convert-quant-to-cmsisnn": convert_quant_to_cmsisnn,
        "fuse-qdq": fuse_qdq,
        "fold-batch-norm": fold_batch_norm,
        "fold-constants": fold_constants,
        "quantize-ptq": quantize_ptq,
        "qas": qas,
        "sparse-update": sparse_update,
        "prune-backward": prune_backward,
        "plan-memory": plan_memory,
        "reorder-update": reorder_update,
    }
