"""`tinymlir-opt`: xDSL's opt driver with tinymlir's dialects, passes and ONNX frontend.

    tinymlir-opt model.onnx -p 'fold-batch-norm,quantize-ptq{calibration="calib.npy"}'
    tinymlir-opt in.mlir --split-input-file --verify-diagnostics
    tinymlir-opt --list-passes
    tinymlir-opt train.mlir -p '...,plan-memory{budget=256KB}' --memory-report mem.json --memory-plot mem.svg

The driver is xDSL's `xDSLOptMain`; this file only fills in its hooks. What it adds is
the error discipline: every failure is ONE line on stderr, never a traceback.

    tinymlir-opt: error: in.mlir:3:14: expected ...          bad input, exit 1
    tinymlir-opt: internal error: ValueError: ...            a bug, exit 2

`--memory-report FILE.json` and `--memory-plot FILE.svg|png|pdf` write the arena plans
that the pipeline's `plan-memory` made (tinymlir/codegen/memory_plot.py); they are written
even when the pass then fails on its budget, to show why.

`TINYMLIR_DEBUG=1` re-raises internal errors so their traceback shows. The helpers
below (registries, parsing, pipeline checks, error lines) are shared with
`tinymlir-run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, NoReturn

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Dialect, Operation
from xdsl.parser import Parser
from xdsl.passes import ModulePass, PassPipeline
from xdsl.universe import XDSL_UNIVERSE, Universe
from xdsl.utils.arg_spec import parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError, VerifyException
from xdsl.utils.lexer import Span
from xdsl.utils.mlir_lexer import MLIRLexer
from xdsl.xdsl_opt_main import xDSLOptMain

from tinymlir.dialects import get_tinymlir_dialects
from tinymlir.passes import get_tinymlir_passes

DEBUG_ENV = "TINYMLIR_DEBUG"

# xDSL 0.74's lexer matches string literals with `"(?:[^"...]+|...)*"`, which backtracks
# exponentially on a line with `"` and no closing quote (an input then never finishes
# lexing). The same pattern with possessive quantifiers (Python >= 3.11) accepts exactly
# the same strings in linear time (tests/test_fuzz.py checks both).
SAFE_STRING_REGEX = r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"'
MLIRLexer._unescaped_characters_regex = re.compile(SAFE_STRING_REGEX)


class ToolError(Exception):
    """A problem with the user's input or command line: one line, exit code 1."""


class InternalError(Exception):
    """A problem of tinymlir itself (a broken install, a missing module): exit code 2."""


# -- registries ------------------------------------------------------------------------
@functools.cache
def _universe() -> Universe:
    """xDSL's multiverse (xDSL + every `xdsl.universe` plugin) with tinymlir's names on top.

    tinymlir's own entry point already puts its dialects and passes in the multiverse;
    merging the dicts (instead of registering twice) keeps that from clashing, and still
    works when the package is used without being installed. If plugins clash (two
    define one name), xDSL refuses the whole multiverse: fall back to xDSL's own
    universe plus tinymlir's, with a warning.
    """
    try:
        base = Universe.get_multiverse()
    except ValueError as e:
        print(f"{_prog()}: warning: ignoring xdsl.universe plugins: {one_line(str(e))}", file=sys.stderr)
        base = XDSL_UNIVERSE
    return Universe(
        all_dialects=base.all_dialects | get_tinymlir_dialects(),
        all_passes=base.all_passes | get_tinymlir_passes(),
        all_targets=dict(base.all_targets),
    )


def available_dialects() -> dict[str, Callable[[], Dialect]]:
    return dict(_universe().all_dialects)


def available_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return dict(_universe().all_passes)


def make_full_context() -> Context:
    """A context with every dialect the tools know (xDSL's, plugins', tinymlir's)."""
    ctx = Context()
    for name, getter in available_dialects().items():
        ctx.register_dialect(name, getter)
    return ctx


# -- parsing ---------------------------------------------------------------------------
_LOCATION = "tinymlir_location"


def parse_mlir(ctx: Context, data: bytes | str, name: str, *, implicit_module: bool = True,
               line_offset: int = 0) -> ModuleOp:
    """Parse MLIR text. A verifier error raised while parsing (a bad `!quant.uniform`
    parameter, an operand type an op rejects) gets the parser's position attached, so
    it can be reported as `file:line:col` like a syntax error."""
    parser = Parser(ctx, data, name)
    try:
        return parser.parse_module(implicit_module)
    except VerifyException as e:
        # The parser has just consumed the offending construct: point at its last character.
        content, pos = parser.lexer.input.content, parser.pos
        while pos > 0 and content[pos - 1 : pos].isspace():
            pos -= 1
        pos = max(pos - 1, 0)
        span = Span(pos, pos, parser.lexer.input, line_offset)
        setattr(e, _LOCATION, str(span.get_location()))
        raise
    # xDSL 0.74 lets some out-of-range literals through as plain Python errors (a value
    # outside its integer type, a dimension or splat too large to build): report them
    # as parse errors at the parser's position.
    except MemoryError:
        raise ParseError(Span(parser.pos, parser.pos, parser.lexer.input, line_offset), "literal too large") from None
    except (ValueError, OverflowError, AssertionError, struct.error) as e:
        raise ParseError(Span(parser.pos, parser.pos, parser.lexer.input, line_offset),
                         f"invalid literal: {one_line(str(e)) or type(e).__name__}") from None


def parse_onnx(io: IO[bytes], name: str) -> ModuleOp:
    """Import an ONNX model with tinymlir's frontend (imported only when needed)."""
    try:
        from tinymlir.frontend.onnx_importer import OnnxImportError, parse_onnx_for_opt
    except ImportError as e:
        raise InternalError(f"the ONNX frontend is not available: {e}") from e
    try:
        from google.protobuf.message import DecodeError
    except ImportError:  # pragma: no cover - onnx always brings protobuf
        DecodeError = OnnxImportError  # noqa: N806
    try:
        return parse_onnx_for_opt(io)
    except (OnnxImportError, DecodeError) as e:
        raise ToolError(f"{name}: {one_line(str(e)) or type(e).__name__}") from e


# -- pass pipelines --------------------------------------------------------------------
def check_pipeline(passes: dict[str, Callable[[], type[ModulePass]]], spec: str) -> None:
    """Raise a one-line ToolError for a malformed pipeline, an unknown pass or a bad
    option, before xDSL's `PassPipeline.parse_spec` builds the pipeline."""
    try:
        specs = list(parse_pipeline(spec))
    except ArgSpecParseError as e:
        # "Error parsing pass pipeline specification:\npass-pipeline:L:C\n<text>\n<^>\n<msg>"
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        col = lines[1].rsplit(":", 1)[-1] if len(lines) > 1 else "?"
        raise ToolError(f"invalid pass pipeline '{spec}': {lines[-1]} at column {col}") from None
    for s in specs:
        if s.name not in passes:
            close = difflib.get_close_matches(s.name, list(passes), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ToolError(f"unknown pass '{s.name}'{hint} (tinymlir-opt --list-passes lists them)")
        try:
            cls = passes[s.name]()
        except Exception as e:
            raise InternalError(f"pass '{s.name}' cannot be loaded: {type(e).__name__}: {one_line(str(e))}") from e
        try:
            cls.from_pass_spec(s)
        except (ValueError, TypeError) as e:
            fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
            accepted = f"its options are {', '.join(fields)}" if fields else "it takes no options"
            raise ToolError(f"invalid options for pass '{s.name}': {one_line(str(e))} ({accepted})") from None


def build_pipeline(passes: dict[str, Callable[[], type[ModulePass]]], spec: str,
                   callback: Callable[..., None] | None = None) -> PassPipeline:
    check_pipeline(passes, spec)
    return PassPipeline.parse_spec(passes, spec, callback)


# -- one-line errors -------------------------------------------------------------------
def one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "tinymlir"


def _post_order(op: Operation) -> Iterator[Operation]:
    for region in op.regions:
        for block in region.blocks:
            for child in block.ops:
                yield from _post_order(child)
    yield op


def find_invalid_op(module: Operation | None) -> Operation | None:
    """The op whose own verifier fails, innermost first (as xDSL verifies)."""
    if module is None:
        return None
    for op in _post_order(module):
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException:
            return op
        except Exception:
            continue
    return None


def _describe_op(op: Operation) -> str:
    sym = op.properties.get("sym_name") or op.attributes.get("sym_name")
    if isinstance(sym, StringAttr):
        return f"'{op.name}' op @{sym.data}"
    parent = op.parent_op()
    while parent is not None:
        psym = parent.properties.get("sym_name") or parent.attributes.get("sym_name")
        if isinstance(psym, StringAttr):
            return f"'{op.name}' op in @{psym.data}"
        parent = parent.parent_op()
    return f"'{op.name}' op"


def describe_error(e: BaseException, *, input_name: str = "", module: Operation | None = None,
                   stage: str = "") -> tuple[str, int] | None:
    """(one-line message, exit code) for a known kind of failure, None for a crash.

    `stage` says where in a pass pipeline it happened ("in pass 'x'", "after pass 'x'").
    """
    where = ": ".join(p for p in (input_name, stage) if p)
    prefix = f"{where}: " if where else ""
    msg = one_line(str(e))
    if isinstance(e, ToolError):
        return msg, 1
    if type(e).__name__ == "OnnxImportError":  # the importer's own one-line reason, naming the file
        return msg, 1
    if isinstance(e, InternalError):
        return msg, 2
    if isinstance(e, ParseError):
        return f"{e.span.get_location()}: {one_line(e.msg)}", 1
    if isinstance(e, VerifyException):
        loc = getattr(e, _LOCATION, None)
        if loc is not None:
            return f"{loc}: {msg}", 1
        op = find_invalid_op(module)
        if op is not None:
            for lead in (f"{op.name}: ", f"{op.name} "):
                msg = msg.removeprefix(lead)
            return f"{prefix}{_describe_op(op)} does not verify: {msg}", 1
        return f"{prefix}verification failed: {msg}", 1
    if isinstance(e, DiagnosticException):  # PassFailedException, InterpretationError, ...
        if stage.startswith("in pass '"):  # "in pass 'x': x: message" -> "in pass 'x': message"
            msg = msg.removeprefix(stage.removeprefix("in pass '").removesuffix("'") + ": ")
        return f"{prefix}{msg}", 1
    if isinstance(e, OSError) and e.filename is not None:
        prefix = f"{stage}: " if stage else ""
        return f"{prefix}cannot open '{e.filename}': {e.strerror or msg}", 1
    return None


def run_cli(prog: str, body: Callable[[], None], context: Callable[[], dict[str, Any]]) -> int:
    """Run `body`, turning every exception into one line on stderr and an exit code."""
    try:
        body()
        return 0
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout was closed early (`| head`): stop quietly, without a second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except BaseException as e:  # ArgSpecParseError derives from BaseException
        if isinstance(e, GeneratorExit):
            raise
        try:
            described = describe_error(e, **context())
        except Exception:
            described = None
        if described is None or described[1] == 2:
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            text = described[0] if described else f"{type(e).__name__}: {one_line(str(e))}"
            print(f"{prog}: internal error: {text} (set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
            return 2
        print(f"{prog}: error: {described[0]}", file=sys.stderr)
        return described[1]


# -- the driver --------------------------------------------------------------------------
def one_line_usage_error(prog: str, message: str) -> NoReturn:
    """argparse's `error`, as one line (no usage dump) and exit code 1."""
    print(f"{prog}: error: {message} (see --help)", file=sys.stderr)
    sys.exit(1)


class _ListNamesAction(argparse.Action):
    """`--list-passes` / `--list-dialects`: print the names, one a line, and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, names: Callable[[], Sequence[str]], **kw: Any):
        super().__init__(option_strings, dest, nargs=0, **kw)
        self.names = names

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print("\n".join(sorted(self.names())))
        parser.exit()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tinymlir")
    except Exception:
        return "unknown"


class TinyMLIROptMain(xDSLOptMain):
    """xDSL's opt driver; only the registration hooks differ, plus bookkeeping for errors."""

    version_format = f"tinymlir-opt {_version()} (xdsl {{xdsl_version}})"

    def __init__(self, args: Sequence[str] | None = None):
        self.module: ModuleOp | None = None  # the module being worked on, for error messages
        self.stage = ""  # where in the pipeline we are, for error messages
        self._line_offset = 0
        super().__init__(description="tinymlir modular optimizer driver (xDSL's xdsl-opt with tinymlir)", args=args)

    # hooks ---------------------------------------------------------------------------
    def register_all_dialects(self) -> None:
        for name, getter in available_dialects().items():
            self.ctx.register_dialect(name, getter)

    def register_all_passes(self) -> None:
        for name, getter in available_passes().items():
            self.register_pass(name, getter)

    def register_all_targets(self) -> None:
        # xDSL's hook re-reads the multiverse; ours already has it (and survives plugin clashes).
        self.available_targets.update(_universe().all_targets)

    def register_all_frontends(self) -> None:
        super().register_all_frontends()
        # Our own `mlir` frontend: the same parser, but verifier errors raised while
        # parsing get a file:line:col (see `parse_mlir`).
        self.available_frontends["mlir"] = lambda io: parse_mlir(
            self.ctx, io.read(), self.get_input_name(),
            implicit_module=not self.args.no_implicit_module, line_offset=self._line_offset)
        self.available_frontends["onnx"] = lambda io: parse_onnx(io, self.get_input_name())

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.error = functools.partial(one_line_usage_error, "tinymlir-opt")  # type: ignore[method-assign]
        arg_parser.add_argument("--list-passes", action=_ListNamesAction, names=lambda: list(self.available_passes),
                                help="print the name of every available pass and exit")
        arg_parser.add_argument("--list-dialects", action=_ListNamesAction,
                                names=lambda: list(self.ctx.registered_dialect_names),
                                help="print the name of every available dialect and exit")
        arg_parser.add_argument("--memory-report", metavar="FILE.json", default=None,
                                help="write the arena plans made by the pipeline's plan-memory pass as JSON")
        arg_parser.add_argument("--memory-plot", metavar="FILE.svg|png|pdf", default=None,
                                help="draw the arena plans made by the pipeline's plan-memory pass")

    # memory reports ----------------------------------------------------------------------
    def _wants_memory_reports(self) -> bool:
        return self.args.memory_report is not None or self.args.memory_plot is not None

    def _check_memory_flags(self) -> None:
        if not self._wants_memory_reports():
            return
        flags = " and ".join(f for f, v in (("--memory-report", self.args.memory_report),
                                             ("--memory-plot", self.args.memory_plot)) if v is not None)
        if not any(p.name == "plan-memory" for p in self.pipeline.passes):
            raise ToolError(f"{flags}: plan-memory did not run (the pipeline has no plan-memory pass; "
                            f"add it, e.g. -p '...,plan-memory')")
        if self.args.memory_plot is not None:
            from tinymlir.codegen.memory_plot import plot_format

            try:
                plot_format(self.args.memory_plot)
            except ValueError as e:
                raise ToolError(f"--memory-plot: {e}") from None

    def _write_memory_reports(self, reports: list[dict]) -> None:
        from tinymlir.codegen.memory_plot import write_plot, write_report

        self.stage = ""
        if self.args.memory_report is not None:
            write_report(reports, self.args.memory_report)
        if self.args.memory_plot is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError as e:
                raise ToolError(f"--memory-plot needs matplotlib (pip install matplotlib): {e}") from None
            write_plot(reports, self.args.memory_plot)

    def run(self) -> None:
        if not self._wants_memory_reports():
            return super().run()
        from tinymlir.passes.plan_memory import recording_plans

        with recording_plans() as reports:
            try:
                super().run()
            except Exception:
                if reports:  # e.g. over budget: the reports show why (best effort)
                    stage = self.stage
                    try:
                        self._write_memory_reports(reports)
                    except Exception:
                        pass
                    self.stage = stage
                raise
            self._write_memory_reports(reports)

    # error bookkeeping -------------------------------------------------------------------
    def setup_pipeline(self) -> None:
        check_pipeline(self.available_passes, self.args.passes)
        super().setup_pipeline()
        self._check_memory_flags()
        verify_and_print = self.pipeline.callback

        def track(previous: ModulePass | None, module: ModuleOp, following: ModulePass | None) -> None:
            self.module = module
            self.stage = f"after pass '{previous.name}'" if previous is not None else ""
            if verify_and_print is not None:
                verify_and_print(previous, module, following)
            self.stage = f"in pass '{following.name}'" if following is not None else ""

        self.pipeline = dataclasses.replace(self.pipeline, callback=track)

    def prepare_input(self) -> tuple[list[tuple[IO[bytes], int]], str]:
        if self.args.input_file is not None and self.args.frontend is None:
            ext = os.path.splitext(self.args.input_file)[1].lstrip(".")
            if ext not in self.available_frontends:
                known = ", ".join(f".{k}" for k in self.available_frontends)
                raise ToolError(f"{self.args.input_file}: unknown input kind '.{ext}' (expected {known}, or -f)")
        return super().prepare_input()

    def parse_chunk(self, chunk: IO[bytes], file_extension: str, start_offset: int = 0) -> ModuleOp | None:
        self.module, self.stage, self._line_offset = None, "", start_offset
        self.module = super().parse_chunk(chunk, file_extension, start_offset)
        return self.module

    def error_context(self) -> dict[str, Any]:
        return {"input_name": self.get_input_name(), "module": self.module, "stage": self.stage}


def main(argv: Sequence[str] | None = None) -> int:
    tool: list[TinyMLIROptMain] = []

    def body() -> None:
        tool.append(TinyMLIROptMain(args=argv))
        tool[0].run()

    return run_cli("tinymlir-opt", body, lambda: tool[0].error_context() if tool else {})


if __name__ == "__main__":
    sys.exit(main())
