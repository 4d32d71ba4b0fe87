"""tinymlir's dialects, keyed by name; each getter imports its dialect lazily."""

from collections.abc import Callable

from xdsl.ir import Dialect


def get_tinymlir_dialects() -> dict[str, Callable[[], Dialect]]:
    def get_nn():
        from tinymlir.dialects.nn import NN

        return NN

    def get_quant():
        from tinymlir.dialects.quant import Quant

        return Quant

    def get_train():
        from tinymlir.dialects.train import Train

        return Train

    def get_cmsisnn():
        from tinymlir.dialects.cmsisnn import CmsisNN

        return CmsisNN

    def get_tk():
        from tinymlir.dialects.tk import TK

        return TK

    return {"nn": get_nn, "quant": get_quant, "train": get_train, "cmsisnn": get_cmsisnn, "tk": get_tk}
