"""Peak memory of one on-device training step of the shared int8 models, per update
variant, next to the paper's figures ("On-Device Training Under 256KB Memory", Lin et al.
2022) and PyTorch's peak for the same step on the fp32 twin.

    python bench/memory.py [--models mcunet-5fps ...] [--json out.json] [--no-qemu] [--no-torch]
                           [--plot docs/benchmarks/memory.png] [--keep DIR]

Variants (per model; scheme = schemes/<model>-<99|98>kb.scheme):

* full update            `fuse-qdq,autodiff{num-classes=10 trainable="all"},qas,prune-backward`
* full update + reorder  ... then `reorder-update` (the C backend needs fused updates)
* sparse update          `fuse-qdq,autodiff{num-classes=10},qas,sparse-update{scheme=...},prune-backward`
* sparse + reorder       ... then `reorder-update`

With --no-qemu the "+ reorder" variants are built but not run (no stack, no instructions;
peak = static SRAM). Without the Cortex-M toolchain they come from model.h only.

The "+ reorder" variants are lowered (`convert-train-to-tk,convert-layout,
convert-quant-to-cmsisnn`), emitted as C (`emit_c`), built with the training harness for
the Cortex-M4 (arm-none-eabi-gcc -O2, picolibc) and run in QEMU (mps2-an386) with the
instruction-count plugin ("M4 binary"):

    peak SRAM = .data + .bss without the linker script's stack reservation (static SRAM:
                the arena MODEL_ARENA_BYTES, the trainable params MODEL_TRAINABLE_BYTES in
                .data, and the rest: libc, harness) + the stack measured by stack painting

The ELF is built with 4096 KiB of SRAM (and 4 MiB of flash) so that it always links and
runs; column "linked SRAM" says whether it also links with the default script (320 KiB,
16 KiB stack reservation, 1 MiB flash), or with 320 KiB and a stack reservation cut to the
measured stack + 1 KiB (then built and run again: same status 0, stack and loss), or only
with 4096 KiB.
Flash = text + data (it includes the harness's fp32 input image, 192 KiB; "flash w/o
input" leaves it out). Instructions: the first training step, between the region markers.

The C backend cannot build a step without fused updates, so "full update" and "sparse
update" (no reordering) are the IR-level plan ("IR plan"): `memory_plan.memory_report` of
@train_step at the training level (NCHW quant ops, before lowering, without kernel scratch,
the fp32 input image left out as in the binary), best-fit arena + trainable bytes; no stack.

PyTorch: the fp32 twin (`<model>-fp32.onnx`), converted to a torch module by the small
converter below (Conv, Clip/Relu, Add, GlobalAveragePool, Flatten/Reshape, Gemm; the
classifier replaced by a new 10-class Linear), same trainable set (sparse: the scheme's
biases, weights, and the classifier; a weight with ratio < 1 trains only its selected
output channels, as a leaf of those rows scattered into the frozen weight with
`index_put`), plain SGD. "+ reorder" applies each SGD update in backward as soon as the
gradient is accumulated and frees it (`register_post_accumulate_grad_hook`), PyTorch's
equivalent of operator reordering. Peak = bytes of every parameter (fp32, all in RAM) and
the input + the peak of the running sum of the CPU allocator's allocations and frees
during one step (the `[memory]` events of `torch.profiler` with `profile_memory=True`),
measured on a second step after a warm-up step. torch.set_num_threads(2).

KB = 1024 bytes throughout. The paper's figures are peak memory of one training step
(batch 1, 128x128); the target is 0.8 x the paper's sparse + reordering figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xdsl.dialects.builtin import ModuleOp  # noqa: E402
from xdsl.passes import PassPipeline  # noqa: E402

from tinymlir.codegen.memory_plan import find_func, memory_report  # noqa: E402
from tinymlir.context import make_context  # noqa: E402
from tinymlir.passes import get_tinymlir_passes  # noqa: E402

DEFAULT_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))
from tinymlir.pipelines import LOWER_TRAIN as LOWER, quantize_nhwc, run_pipeline_reading_input_type  # noqa: E402
KB = 1024
TARGET_FACTOR = 0.8
# model -> scheme file and the paper's peak memory, KB: full update, sparse update, sparse + reordering
MODELS = {
    "mcunet-5fps": ("mcunet-5fps-99kb.scheme", (3650, 560, 173)),
    "mbv2-w0.35": ("mbv2-w0.35-99kb.scheme", (2939, 335, 141)),
    "proxyless-w0.3": ("proxyless-w0.3-98kb.scheme", (2745, 326, 135)),
}
# variant -> (sparse?, reorder?, index of the paper's figure or None)
VARIANTS = {
    "full update": (False, False, 0),
    "full update + reorder": (False, True, None),
    "sparse update": (True, False, 1),
    "sparse + reorder": (True, True, 2),
}
COLUMNS = ["model", "variant", "source", "linked SRAM", "arena KB", "trainable KB", "other static KB", "stack KB",
           "peak KB", "static SRAM KB", "flash KB", "flash w/o input KB", "instructions", "status",
           "fits 256 KB", "fits 320 KB", "paper KB", "ours/paper", "target KB", "target", "torch KB"]


@dataclass
class Row:
    model: str
    variant: str
    source: str = ""                 # "M4 binary" or "IR plan"
    arena: int = 0                   # bytes
    trainable: int = 0
    other_static: int | None = None
    stack: int | None = None
    peak: int = 0
    static_sram: int | None = None
    flash: int | None = None
    flash_no_input: int | None = None
    instructions: int | None = None
    status: int | None = None
    link: str | None = None          # the SRAM the ELF was linked with (M4 binary)
    paper_kb: int | None = None
    target_kb: float | None = None
    torch: dict | None = None
    detail: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.peak / KB / self.paper_kb if self.paper_kb else None

    @property
    def target_met(self) -> bool | None:
        return None if self.target_kb is None else self.peak <= self.target_kb * KB

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d.update(ratio=self.ratio, target_met=self.target_met, fits_256kb=self.peak <= 256 * KB,
                 fits_320kb=self.peak <= 320 * KB)
        return d


# --------------------------------------------------------------------------- tinymlir


def run(module: ModuleOp, spec: str) -> ModuleOp:
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    return module


def scheme_path(model: str) -> Path:
    return REPO / "schemes" / MODELS[model][0]


def train_spec(model: str, sparse: bool) -> str:
    if sparse:
        return f'autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme_path(model)}"}},prune-backward'
    return 'autodiff{num-classes=10 trainable="all"},qas,prune-backward'


def _peak_summary(report: dict, func, top: int = 6) -> dict:
    """The step at the arena's peak and its largest live buffers, each with the op that
    defines it and its shape."""
    from xdsl.ir import BlockArgument

    from tinymlir.codegen.memory_plan import printed_names

    by_name = {n: v for v, n in printed_names(func).items()}
    live = []
    for b in report["peak_live_buffers"][:top]:
        v = by_name.get(b["name"])
        b = dict(b)
        if v is not None:
            b["op"] = "argument" if isinstance(v, BlockArgument) else v.owner.name
            shape = v.type.get_shape() if hasattr(v.type, "get_shape") else ()
            b["shape"] = "x".join(map(str, shape))
        live.append(b)
    return {"peak_op_index": report["peak_op_index"], "peak_op": report["peak_op"],
            "lower_bound": report["lower_bound"], "peak_live_buffers": live,
            "peak_live_count": len(report["peak_live_buffers"])}


def ir_plan(module: ModuleOp) -> tuple[int, int, dict]:
    """(best-fit arena bytes, trainable bytes, peak summary) of @train_step at the training level."""
    func = find_func(module, "train_step")
    r = memory_report(func, strategies=("best-fit",), include_args=False)
    return r["arena_bytes"]["best-fit"], r["trainable_bytes"], _peak_summary(r, func)


def trainable_breakdown(module: ModuleOp) -> dict:
    """Bytes of the trainable `train.param`s: weights, biases, the largest ones."""
    from tinymlir.codegen.memory_plan import tensor_bytes
    from tinymlir.dialects.train import ParamOp

    params = {op.sym_name.data: op for op in module.walk() if isinstance(op, ParamOp) and op.is_trainable}
    ps = [(n, tensor_bytes(op.type)) for n, op in params.items()]
    rows = {}  # a partially trained weight: the bytes of the output channels it trains
    for op in module.walk():
        ch, ref = op.properties.get("channels"), op.properties.get("param")
        if ch is not None and ref is not None and hasattr(ref, "root_reference"):
            name = ref.root_reference.data
            if name in params:
                shape = params[name].type.get_shape()
                rows[name] = tensor_bytes(params[name].type) * len(ch.get_values()) // shape[0]
    partial = {n: b for n, b in ps if n in rows}
    return {"count": len(ps), "weight_bytes": sum(b for n, b in ps if n.endswith("weight")),
            "bias_bytes": sum(b for n, b in ps if n.endswith("bias")),
            "partial_weight_bytes": sum(partial.values()), "partial_trained_row_bytes": sum(rows.values()),
            "partial": {n: [b, rows[n]] for n, b in partial.items()},
            "largest": sorted(ps, key=lambda p: -p[1])[:6]}


def _defines(header: str) -> dict[str, int]:
    out = {}
    for ln in header.splitlines():
        f = ln.split()
        if len(f) == 3 and f[0] == "#define" and f[2].lstrip("-").isdigit():
            out[f[1]] = int(f[2])
    return out


def _symbol_size(elf: Path, symbol: str) -> int:
    from tinymlir.codegen.build import find_tool

    nm = find_tool("arm-none-eabi-nm")
    r = subprocess.run([nm, "-S", str(elf)], capture_output=True, text=True, timeout=60)
    for f in (ln.split() for ln in r.stdout.splitlines()):
        if len(f) == 4 and f[3] == symbol:
            return int(f[1], 16)
    return 0


def _linker_script(outdir: Path, ram_kib: int, stack_bytes: int, flash_kib: int) -> Path:
    """A copy of the Cortex-M4 linker script with other SRAM / stack reservation / flash sizes."""
    import re

    from tinymlir.codegen.build import LINKER_SCRIPT

    text = LINKER_SCRIPT.read_text()
    for sym, val in (("__ram_size", ram_kib * KB), ("__stack_size", stack_bytes), ("__flash_size", flash_kib * KB)):
        text, n = re.subn(rf"{sym}\s*=\s*0x[0-9a-fA-F]+;", f"{sym} = {val:#x};", text)
        assert n == 1, sym
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"cortex_m4_{ram_kib}k_stack{stack_bytes}_flash{flash_kib}k.ld"
    path.write_text(text)
    return path


def _script_sizes() -> tuple[int, int, int]:
    """(SRAM KiB, stack reservation bytes, flash KiB) of the default linker script."""
    import re

    from tinymlir.codegen.build import LINKER_SCRIPT

    text = LINKER_SCRIPT.read_text()
    get = lambda sym: int(re.search(rf"{sym}\s*=\s*(0x[0-9a-fA-F]+);", text).group(1), 16)  # noqa: E731
    return get("__ram_size") // KB, get("__stack_size"), get("__flash_size") // KB


def _run_m4(elf: Path) -> tuple[int, int, int, list[float], bool]:
    """(status, stack bytes, instructions of step 1, losses, markers hit) of one QEMU run."""
    from tinymlir.codegen import build as B
    from tinymlir.codegen import qemu_icount as Q

    res = Q.run_icount(elf, timeout=1800)
    if res.exit_code != 0 and "END" not in res.output:
        return res.exit_code, -1, res.count, [], res.begin_hit and res.end_hit
    tr = B.parse_train_output(res.output)
    status = res.exit_code if res.exit_code != 0 else next((s for s in tr.status if s != 0), 0)
    return status, tr.stack_bytes, res.count, tr.loss, res.begin_hit and res.end_hit


def m4_measure(row: Row, module: ModuleOp, workdir: Path, qemu: bool, notes: list[str]) -> None:
    """Lower, emit C, build for the Cortex-M4 and (with `qemu`) run one training step.

    The ELF is first linked with 4096 KiB of SRAM and 4 MiB of flash, whatever it needs, so
    that it always links and runs; whether it links with the default script (320 KiB SRAM
    with a 16 KiB stack reservation, 1 MiB flash) follows from its section sizes. When the
    measured peak fits 320 KiB but the default script does not, it is linked again with
    320 KiB and a stack reservation of the measured stack + 1 KiB (rounded up to 1 KiB)
    and run again: that run must give status 0 and the same stack."""
    from tinymlir.codegen import build as B
    from tinymlir.codegen.emit_c import emit_c

    _, in_type = run_pipeline_reading_input_type(module, LOWER)  # the quantized input the C takes (int8 NHWC)
    func = find_func(module, "train_step")
    lowered = memory_report(func, strategies=("best-fit",), include_args=False)
    row.detail["lowered_plan"] = {"arena": lowered["arena_bytes"]["best-fit"], **_peak_summary(lowered, func)}
    files = emit_c(module, prefix="model")
    d = _defines(files["model.h"])
    row.source = "C (model.h)"
    row.arena, row.trainable = d["MODEL_ARENA_BYTES"], d["MODEL_TRAINABLE_BYTES"]
    row.detail["frozen_param_bytes"] = d["MODEL_FROZEN_PARAM_BYTES"]
    row.peak = row.arena + row.trainable
    try:
        B.find_tool("arm-none-eabi-gcc")
        B.find_tool("arm-none-eabi-size")
    except B.ToolchainMissing as e:
        notes.append(f"{row.model} {row.variant}: not built ({e}); arena and trainable bytes from model.h only")
        return
    x = quantize_nhwc(np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32), in_type)
    srcs = B.write_train_harness(workdir, files, x, [3], 0.05)
    ram_kib, stack_reserve, flash_kib = _script_sizes()
    elf = B.build_cortex_m4(workdir, srcs, linker_script=_linker_script(workdir, 4096, stack_reserve, 4096))
    row.source = "M4 binary"
    size = B.size_report(elf)
    row.detail["size"] = size
    row.static_sram, row.flash = size["sram_static"], size["flash"]
    row.flash_no_input = size["flash"] - _symbol_size(elf, "train_input")
    row.other_static = row.static_sram - row.arena - row.trainable
    row.peak = row.static_sram
    links = size["sram"] <= ram_kib * KB and size["flash"] <= flash_kib * KB
    row.detail["links_default_script"] = links
    row.link = f"{ram_kib} KiB" if links else "4096 KiB"
    if not qemu:
        row.source = "M4 build (not run)"
        return
    row.status, row.stack, row.instructions, loss, hit = _run_m4(elf)
    row.detail["loss"] = loss
    if not hit:
        notes.append(f"{row.model} {row.variant}: a region marker was not reached")
    if row.stack < 0:
        notes.append(f"{row.model} {row.variant}: the run failed (exit {row.status}), no stack measured")
        return
    row.peak = row.static_sram + row.stack
    reserve = -(-(row.stack + KB) // KB) * KB
    if not links and row.static_sram + reserve <= ram_kib * KB and size["flash"] <= flash_kib * KB:
        tight = workdir / "tight"
        srcs = B.write_train_harness(tight, files, x, [3], 0.05)
        elf2 = B.build_cortex_m4(tight, srcs, linker_script=_linker_script(tight, ram_kib, reserve, flash_kib))
        status, stack, count, loss2, _ = _run_m4(elf2)
        ok = (status == 0 and stack == row.stack and loss2 == loss
              and B.size_report(elf2)["sram_static"] == row.static_sram)
        row.detail["tight_link"] = {"ram_kib": ram_kib, "stack_reserve": reserve, "status": status,
                                    "stack": stack, "instructions": count, "same_result": ok}
        if ok:
            row.link = f"{ram_kib} KiB (stack {reserve // KB} KiB)"
        else:
            notes.append(f"{row.model} {row.variant}: relinked with {ram_kib} KiB and a {reserve} B stack "
                         f"reservation it gave status {status}, stack {stack}, loss {loss2} (vs {row.stack}, {loss})")


# --------------------------------------------------------------------------- PyTorch


def _torch_model(onnx_path: Path, sparse_scheme: Path | None):
    """The fp32 ONNX graph as a torch module whose forward frees each value after its last
    use; returns (module, list of parameters to train)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from tinymlir.passes.scheme import load_scheme
    from tinymlir.passes.sparse_update import channel_count

    g = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    layers = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
    count = len(layers)
    scheme = load_scheme(sparse_scheme) if sparse_scheme else None
    ratios = scheme.ratios() if scheme else {}
    bias_layers = set(range(count - 1 - scheme.bias_last, count - 1)) if scheme else set()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            self.partial: dict[int, tuple] = {}
            self.trained: list[torch.nn.Parameter] = []
            for i, n in enumerate(layers):
                a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
                if i == count - 1:  # the new classifier, always trained
                    k = inits[n.input[1]].shape[1 if a.get("transB", 0) else 0]
                    self.fc = torch.nn.Linear(k, 10)
                    self.trained += [self.fc.weight, self.fc.bias]
                    continue
                w = torch.tensor(inits[n.input[1]])
                pads = list(a.get("pads", [0, 0, 0, 0]))
                assert pads[:2] == pads[2:], pads
                conv = torch.nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                                       stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                                       dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1),
                                       bias=len(n.input) > 2)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    if conv.bias is not None:
                        conv.bias.copy_(torch.tensor(inits[n.input[2]]))
                full = scheme is None
                conv.weight.requires_grad_(full)
                if conv.bias is not None:
                    conv.bias.requires_grad_(full or i in bias_layers)
                    if conv.bias.requires_grad:
                        self.trained.append(conv.bias)
                if full or ratios.get(i) == 1.0:
                    conv.weight.requires_grad_(True)
                    self.trained.append(conv.weight)
                elif i in ratios:  # train only the selected output channels
                    kk = channel_count(ratios[i], w.shape[0])
                    norms = w.reshape(w.shape[0], -1).double().norm(dim=1).numpy()
                    idx = torch.tensor(sorted(int(c) for c in np.argsort(-norms, kind="stable")[:kk]))
                    rows = torch.nn.Parameter(w[idx].clone())
                    self.register_parameter(f"rows{i}", rows)
                    self.partial[i] = (idx, rows)
                    self.trained.append(rows)
                self.convs.append(conv)
            self.nodes = list(g.node)
            self.output = g.output[0].name
            self.input = g.input[0].name
            last: dict[str, int] = {}
            for k, n in enumerate(self.nodes):
                for v in n.input:
                    last[v] = k
            self.last = last

        def forward(self, x):
            import torch.nn.functional as F

            env = {self.input: x}
            li = 0
            for k, n in enumerate(self.nodes):
                ins = [env[v] if v in env else None for v in n.input]
                op = n.op_type
                if op == "Conv":
                    conv = self.convs[li]
                    w = conv.weight
                    if li in self.partial:
                        idx, rows = self.partial[li]
                        w = torch.index_put(w, (idx,), rows)
                    y = F.conv2d(ins[0], w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
                    li += 1
                elif op == "Gemm":
                    y = self.fc(ins[0])
                elif op == "Clip":
                    lo, hi = (float(inits[v]) if v in inits else None for v in (list(n.input[1:]) + ["", ""])[:2])
                    y = torch.clamp(ins[0], lo, hi)
                elif op == "Relu":
                    y = torch.relu(ins[0])
                elif op == "Add":
                    y = ins[0] + ins[1]
                elif op == "GlobalAveragePool":
                    y = ins[0].mean(dim=(2, 3), keepdim=True)
                elif op in ("Flatten", "Reshape"):
                    y = torch.flatten(ins[0], 1)
                else:
                    raise NotImplementedError(f"ONNX op {op} in {onnx_path.name}")
                env[n.output[0]] = y
                for v in n.input:  # free values after their last use
                    if self.last.get(v) == k and v in env and v != self.output:
                        del env[v]
            return env[self.output]

    net = Net()
    return net, net.trained


def torch_peak(model: str, models_dir: Path, sparse: bool, reorder: bool) -> dict:
    """Peak bytes of one SGD training step of the fp32 twin in PyTorch (see the docstring)."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net, trained = _torch_model(models_dir / f"{model}-fp32.onnx", scheme_path(model) if sparse else None)
    x = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32))
    label = torch.tensor([3])
    lr = 0.05
    hooks = []
    if reorder:
        def update(p):
            with torch.no_grad():
                p.add_(p.grad, alpha=-lr)
            p.grad = None
        hooks = [p.register_post_accumulate_grad_hook(update) for p in trained]
        opt = None
    else:
        opt = torch.optim.SGD(trained, lr=lr, foreach=False)

    def step():
        loss = F.cross_entropy(net(x), label)
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    step()  # warm-up
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    base = params + x.numel() * x.element_size() + label.numel() * label.element_size()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
    running = top = 0
    for _, n in events:
        running += n
        top = max(top, running)
    for h in hooks:
        h.remove()
    return {"peak_bytes": base + top, "step_peak_bytes": top, "param_bytes": params,
            "trained_param_bytes": sum(p.numel() * p.element_size() for p in trained),
            "input_bytes": x.numel() * x.element_size(), "memory_events": len(events)}


# --------------------------------------------------------------------------- the benchmark


def measure(models: list[str], models_dir: Path = DEFAULT_DIR, *, qemu: bool = True, torch_: bool = True,
            variants: list[str] | None = None, workdir: Path | None = None,
            notes: list[str] | None = None, log=None) -> list[Row]:
    """Every (model, variant) row; the core of the benchmark."""
    from tinymlir.frontend import import_onnx

    notes = notes if notes is not None else []
    variants = variants or list(VARIANTS)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for model in models:
            path = models_dir / f"{model}-int8.onnx"
            if not path.exists():
                notes.append(f"skipped {model}: {path} not found")
                continue
            base = run(import_onnx(str(path)), "fuse-qdq")
            trained: dict[bool, ModuleOp] = {}
            for variant in variants:
                t0 = time.perf_counter()
                sparse, reorder, paper_i = VARIANTS[variant]
                paper = MODELS[model][1]
                row = Row(model, variant)
                if paper_i is not None:
                    row.paper_kb = paper[paper_i]
                if variant == "sparse + reorder":
                    row.target_kb = TARGET_FACTOR * paper[2]
                if sparse not in trained:
                    trained[sparse] = run(base.clone(), train_spec(model, sparse))
                module = trained[sparse].clone()
                if reorder:
                    run(module, "reorder-update")
                arena, trainable, summary = ir_plan(module)
                row.detail["trainable_params"] = trainable_breakdown(module)
                row.detail["ir_plan"] = {"arena": arena, "trainable": trainable, **summary}
                if reorder:
                    m4_measure(row, module, root / model / variant.replace(" ", "").replace("+", "_"), qemu, notes)
                else:
                    row.source, row.arena, row.trainable, row.peak = "IR plan", arena, trainable, arena + trainable
                if torch_:
                    fp32 = models_dir / f"{model}-fp32.onnx"
                    if fp32.exists():
                        row.torch = torch_peak(model, models_dir, sparse, reorder)
                    else:
                        notes.append(f"{model}: {fp32} not found, no PyTorch figure")
                row.detail["seconds"] = round(time.perf_counter() - t0, 1)
                if log:
                    log(f"{model} / {variant}: {row.source}, peak {row.peak / KB:.1f} KB "
                        f"({row.detail['seconds']} s)")
                rows.append(row)
    return rows


def _kb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / KB:.1f}"


def _yes(b: bool | None) -> str:
    return "-" if b is None else ("yes" if b else "no")


def cells(r: Row) -> list[str]:
    return [r.model, r.variant, r.source, r.link or "-", _kb(r.arena),
            _kb(r.trainable), _kb(r.other_static), _kb(r.stack), _kb(r.peak), _kb(r.static_sram), _kb(r.flash),
            _kb(r.flash_no_input), "-" if r.instructions is None else f"{r.instructions / 1e6:.1f} M",
            "-" if r.status is None else str(r.status), _yes(r.peak <= 256 * KB), _yes(r.peak <= 320 * KB),
            "-" if r.paper_kb is None else str(r.paper_kb), "-" if r.ratio is None else f"{r.ratio:.2f}",
            "-" if r.target_kb is None else f"{r.target_kb:.0f}",
            "-" if r.target_met is None else ("met" if r.target_met else "not met"),
            "-" if r.torch is None else _kb(r.torch["peak_bytes"])]


def table(rows: list[Row]) -> str:
    body = [cells(r) for r in rows]
    widths = [max(len(x[i]) for x in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    shown = [v for v in VARIANTS if VARIANTS[v][2] is not None]  # the paper's three columns
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.2))
    axes = np.atleast_1d(axes)
    for ax, variant in zip(axes, shown):
        by = {r.model: r for r in rows if r.variant == variant}
        xs = np.arange(len(models))
        ours = [by[m].peak / KB if m in by else 0 for m in models]
        paper = [MODELS[m][1][VARIANTS[variant][2]] for m in models]
        torch_ = [by[m].torch["peak_bytes"] / KB if m in by and by[m].torch else 0 for m in models]
        n = 3 if any(torch_) else 2
        wd = 0.8 / n
        src = {by[m].source for m in models if m in by}
        bars = [ax.bar(xs - wd * (n - 1) / 2, ours, wd, label=f"tinymlir ({', '.join(sorted(src))})",
                       color="tab:blue"),
                ax.bar(xs - wd * (n - 1) / 2 + wd, paper, wd, label="paper", color="tab:orange")]
        if any(torch_):
            bars.append(ax.bar(xs - wd * (n - 1) / 2 + 2 * wd, torch_, wd, label="PyTorch fp32", color="tab:gray"))
        for b in bars:
            ax.bar_label(b, fmt="%.0f", fontsize=6, padding=1)
        vals = [v for v in ours + paper + torch_ if v > 0]
        if variant == "sparse + reorder":
            for i, m in enumerate(models):
                t = TARGET_FACTOR * MODELS[m][1][2]
                ax.hlines(t, i - 0.45, i + 0.45, colors="tab:red", linestyles="--",
                          label="target 0.8 x paper" if i == 0 else None)
            ax.axhline(256, color="black", lw=0.8, ls=":", label="256 KB")
        ax.set_yscale("log")
        ax.set_ylim(min(vals) / 2, max(vals) * 2.5)
        ax.set_xticks(xs, models, fontsize=8)
        ax.set_title(variant)
        ax.set_ylabel("peak memory of one training step, KB")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--json", type=Path, help="also write every row (with the arena's peak step and tensors) here")
    ap.add_argument("--no-qemu", action="store_true", help="build but do not run: no stack, no instructions")
    ap.add_argument("--no-torch", action="store_true", help="leave out PyTorch's peak")
    ap.add_argument("--plot", type=Path, help="write the grouped bar chart here (e.g. docs/benchmarks/memory.png)")
    ap.add_argument("--keep", type=Path, help="build in this directory and keep it")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    notes: list[str] = []
    rows = measure(args.models, args.models_dir, qemu=not args.no_qemu, torch_=not args.no_torch,
                   variants=args.variants, workdir=args.keep, notes=notes,
                   log=lambda s: print(s, file=sys.stderr, flush=True))
    print("Peak memory of one training step (batch 1, 128x128, 10 classes). KB = 1024 bytes. M4 binary: "
          "Cortex-M4 ELF run in QEMU, peak = static SRAM (.data + .bss without the stack reservation) + "
          "measured stack. IR plan: training-level arena (best-fit) + trainable bytes, no stack, no kernel "
          "scratch (the C backend cannot build it without reorder-update). torch: fp32 twin in PyTorch, all "
          "params + input + the step's allocator peak.\n")
    print(table(rows))
    for n in notes:
        print(f"note: {n}")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
    if args.plot and rows:
        plot(rows, args.plot)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
