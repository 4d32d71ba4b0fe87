"""tinymlir's dialects and passes for xDSL's plugin mechanism (`xdsl.universe`)."""

from xdsl.universe import Universe

from tinymlir.dialects import get_tinymlir_dialects
from tinymlir.passes import get_tinymlir_passes

TINYMLIR_UNIVERSE = Universe(all_dialects=get_tinymlir_dialects(), all_passes=get_tinymlir_passes())
