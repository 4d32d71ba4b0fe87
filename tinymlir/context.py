"""An xDSL `Context` with every dialect tinymlir reads and writes."""

from xdsl.context import Context
from xdsl.dialects import get_all_dialects

from tinymlir.dialects import get_tinymlir_dialects


def make_context() -> Context:
    ctx = Context()
    for name, getter in (get_all_dialects() | get_tinymlir_dialects()).items():
        ctx.register_dialect(name, getter)
    return ctx
