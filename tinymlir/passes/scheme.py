"""Sparse-update schemes: which biases and which weights (and what fraction of their
output channels) `sparse-update` trains. Syntax and examples: docs/schemes.md.

A scheme file, one statement a line, `#` starts a comment:

    # mcunet-5fps 99kb
    bias last 22
    weights 21:1 24:1 27:1 30:1 36:0.125 39:0.25

The `weights=` pass option uses the same entries, comma- or space-separated:
`sparse-update{bias-last=22 weights="21:1,24:1,36:0.125"}`.

This module checks everything a scheme can get wrong on its own (syntax, a ratio outside
(0, 1], a layer listed twice, `bias last` given twice); what needs the model (a layer
that does not exist) is checked by the pass, which reports it at the entry's position.
Every error is one line starting with `file:line:column:`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, v_args
from lark.exceptions import VisitError
from xdsl.utils.exceptions import PassFailedException

GRAMMAR = r"""
// A scheme file: lines, each empty or one statement (the text gets a final line break).
start: (_stmt? _NL)*
_stmt: bias | weights

// `bias last N`: the biases of the N layers before the classifier.
bias: "bias" "last" INT

// `weights L:R ...`: layer L's weights, the fraction R of its output channels.
weights: "weights" _entries

// The value of the `weights=` pass option.
entries: _entries
_entries: entry ("," ? entry)*
entry: INT ":" RATIO

INT: /[0-9]+/
RATIO: /[0-9]+(\.[0-9]*)?|\.[0-9]+/
COMMENT: /#[^\n]*/
_NL: /\r?\n/

%ignore /[ \t]+/
%ignore COMMENT
"""

# What a token is called in an error message.
_TERMINALS = {
    "INT": "an integer",
    "RATIO": "a ratio (a number in (0, 1])",
    "COLON": "':'",
    "COMMA": "','",
    "_NL": "a line break",
    "BIAS": "'bias'",
    "LAST": "'last'",
    "WEIGHTS": "'weights'",
    "$END": "the end of the input",
}


@dataclass(frozen=True)
class Entry:
    """`layer:ratio`, with its position (`file:line:column`) for error messages."""

    layer: int
    ratio: float
    where: str


@dataclass(frozen=True)
class Scheme:
    """A parsed scheme. `bias_where` / `Entry.where` locate statements for messages."""

    bias_last: int = 0
    weights: tuple[Entry, ...] = ()
    bias_where: str = ""
    source: str = ""

    def ratios(self) -> dict[int, float]:
        return {e.layer: e.ratio for e in self.weights}


class SchemeError(PassFailedException):
    """A bad scheme: one line, `file:line:column: message`."""


@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR, start=["start", "entries"], parser="lalr", propagate_positions=True,
                maybe_placeholders=False)


def _describe(name: str) -> str:
    return _TERMINALS.get(name, repr(name.lower()) if name.isupper() else name)


def _error_line(source: str, text: str, e: UnexpectedInput) -> str:
    line, column = e.line, e.column
    if isinstance(e, UnexpectedToken) and e.token.type == "$END" or line is None or line < 1:
        # Lark puts no position on the end of input: point just past the last character.
        lines = text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    if isinstance(e, UnexpectedCharacters):
        word = re.match(r"[^\s,:#]+|.", text[e.pos_in_stream:]) if e.pos_in_stream is not None else None
        expected = sorted({_describe(t) for t in (e.allowed or ())})
        what = f"unexpected {word.group(0)!r}" if word else "unexpected input"
    elif isinstance(e, UnexpectedToken):
        expected = sorted({_describe(t) for t in e.expected})
        if e.token.type == "$END":
            what = "unexpected end of input"
        elif e.token.type == "_NL":
            what = "unexpected end of line"
        else:
            what = f"unexpected {str(e.token)!r}"
    else:
        expected, what = [], "syntax error"
    hint = f", expected {' or '.join(expected)}" if expected else ""
    return f"{source}:{line}:{column}: {what}{hint}"


class _Build(Transformer):
    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def _where(self, tok: Token) -> str:
        return f"{self.source}:{tok.line}:{tok.column}"

    @v_args(inline=True)
    def entry(self, layer: Token, ratio: Token) -> Entry:
        r = float(ratio)
        if not (0.0 < r <= 1.0 and math.isfinite(r)):
            hint = (f": leave layer {int(layer)} out to keep its weights frozen (the paper's tables write "
                    f"{int(layer)}:0 for that)" if r == 0 else "")
            raise SchemeError(f"{self._where(ratio)}: ratio {ratio} for layer {int(layer)} is outside (0, 1]{hint}")
        return Entry(int(layer), r, self._where(layer))

    def entries(self, items: list[Entry]) -> list[Entry]:
        return list(items)

    def weights(self, items: list[Entry]) -> list[Entry]:
        return list(items)

    @v_args(inline=True)
    def bias(self, n: Token) -> tuple[int, str]:
        return int(n), self._where(n)

    def start(self, stmts: list) -> Scheme:
        bias: tuple[int, str] | None = None
        entries: list[Entry] = []
        for s in stmts:
            if isinstance(s, tuple):
                if bias is not None:
                    raise SchemeError(f"{s[1]}: 'bias last' is given twice (first at {bias[1]})")
                bias = s
            else:
                entries.extend(s)
        return _scheme(entries, bias, self.source)


def _scheme(entries: list[Entry], bias: tuple[int, str] | None, source: str) -> Scheme:
    seen: dict[int, Entry] = {}
    for e in entries:
        if e.layer in seen:
            raise SchemeError(f"{e.where}: layer {e.layer} is listed twice (first at {seen[e.layer].where})")
        seen[e.layer] = e
    n, where = bias if bias is not None else (0, "")
    return Scheme(n, tuple(sorted(entries, key=lambda e: e.layer)), where, source)


def _parse(text: str, source: str, start: str):
    try:
        tree = _parser().parse(text, start=start)
    except UnexpectedInput as e:
        raise SchemeError(_error_line(source, text, e)) from None
    try:
        return _Build(source).transform(tree)
    except VisitError as e:  # lark wraps what the transformer raises
        if isinstance(e.orig_exc, SchemeError):
            raise e.orig_exc from None
        raise


def parse_scheme(text: str, source: str = "<scheme>") -> Scheme:
    """Parse the text of a scheme file; `source` names it in error messages."""
    if not text.endswith("\n"):
        text += "\n"
    return _parse(text, source, "start")


def load_scheme(path: str | Path) -> Scheme:
    """Read and parse a scheme file (SchemeError if it cannot be read)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SchemeError(f"cannot read scheme file '{path}': {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SchemeError(f"scheme file '{path}' is not text: {e.reason}") from None
    return parse_scheme(text, str(path))


def scheme_from_options(bias_last: int | None, weights: str | None) -> Scheme:
    """The scheme of the pass options `bias-last=N weights="L:R,..."`; errors point at the
    column of the `weights` string (`weights:1:7: ...`)."""
    if bias_last is not None and bias_last < 0:
        raise SchemeError(f"bias-last={bias_last}: expected a count >= 0")
    entries: list[Entry] = []
    if weights is not None and weights.strip():
        entries = _parse(weights, "weights", "entries")
    return _scheme(entries, (bias_last, "") if bias_last is not None else None, "options")


# The paper's schemes (shared/models/README.md), as scheme-file text. The README's `L:0`
# entries are left out: a ratio of 0 means "weights frozen", which is what leaving the
# layer out says (docs/schemes.md).
PAPER_SCHEMES: dict[str, dict[str, str]] = {
    "mcunet-5fps": {
        "49kb": "bias last 20\nweights 24:0.25 27:0.5 30:0.5\n",
        "99kb": "bias last 22\nweights 21:1 24:1 27:1 30:1 36:0.125 39:0.25\n",
        "148kb": "bias last 23\nweights 21:1 24:1 27:1 30:1 36:1 39:0.5\n",
    },
    "mbv2-w0.35": {
        "99kb": "bias last 25\nweights 27:1 30:1 33:1 36:1 39:1 42:0.125 45:0.5 48:1\n",
        "138kb": "bias last 34\nweights 27:1 30:1 33:1 36:1 39:1 42:1 45:1 48:1\n",
    },
    "proxyless-w0.3": {
        "98kb": "bias last 25\nweights 36:1 39:0.5 42:1 45:1 48:0.25 51:0.5 54:1 57:1\n",
        "148kb": "bias last 45\nweights 36:1 39:1 42:1 45:1 48:1 51:1 54:1 57:1\n",
    },
}
