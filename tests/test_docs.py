"""The docs that are generated or executable stay true.

* docs/reference/*.md are what `python -m tinymlir.tools.gen_reference` generates from the
  dialect and pass definitions (regenerate them when this fails);
* docs/tutorial-custom-pass.md: its files are written into a temporary package, installed
  as a plugin the way pip would (a .dist-info with the `xdsl.universe` entry point), and
  its `RUN:` lines run through the real `tinymlir-opt` and `filecheck`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinymlir.tools import gen_reference

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial-custom-pass.md"


# -- reference docs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return gen_reference.generate()


def test_reference_docs_are_up_to_date(generated):
    stale = []
    for name, text in generated.items():
        path = gen_reference.OUT_DIR / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(ROOT)))
    assert not stale, (f"{', '.join(stale)} out of date with the dialect/pass definitions: "
                       f"run `{gen_reference.COMMAND}` and commit the result")


def test_reference_docs_are_deterministic(generated):
    assert gen_reference.generate() == generated


def test_reference_docs_cover_every_op_and_pass(generated):
    from tinymlir.dialects import get_tinymlir_dialects
    from tinymlir.passes import get_tinymlir_passes

    dialects = generated["dialects.md"]
    for name, getter in get_tinymlir_dialects().items():
        assert f"## Dialect `{name}`" in dialects
        for op in getter().operations:
            assert f"### `{op.name}`" in dialects, op.name
    passes = generated["passes.md"]
    for name, getter in get_tinymlir_passes().items():
        assert f"## `{name}`" in passes, name
        for opt, _, _ in gen_reference.pass_options(getter()):
            assert f"| `{opt}` |" in passes, (name, opt)


def test_reference_docs_describe_operands_and_options(generated):
    d = generated["dialects.md"]
    conv = d[d.index("### `nn.conv2d`"):d.index("### ", d.index("### `nn.conv2d`") + 5)]
    assert "| `bias` | tensor of any float | optional |" in conv
    assert "| `groups` |" in conv and "**Traits:** `Pure`" in conv
    p = generated["passes.md"]
    assert "| `num-classes` | `int \\| None` | none |" in p
    assert "| `max-elements` | `int` | 1000000 |" in p


def test_gen_reference_check_flag(tmp_path):
    assert gen_reference.main(["--out", str(tmp_path)]) == 0
    assert gen_reference.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "passes.md").write_text("old\n")
    assert gen_reference.main(["--out", str(tmp_path), "--check"]) == 1


# -- the tutorial ----------------------------------------------------------------------------
_BLOCK = re.compile(r"(?:<!-- tutorial-file: (?P<file>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def tutorial_blocks() -> list[tuple[str | None, str, str]]:
    """(file name or None, language, body) of every fenced block of the tutorial."""
    return [(m["file"], m["lang"], m["body"]) for m in _BLOCK.finditer(TUTORIAL.read_text(encoding="utf-8"))]


def install_tutorial_plugin(root: Path) -> Path:
    """Write the tutorial's files under root/src and register the plugin as pip would:
    a `relu_plugin-0.1.0.dist-info` whose entry_points.txt is the pyproject's
    `[project.entry-points.'xdsl.universe']` table. Returns the source directory."""
    import tomllib

    src = root / "src"
    for name, _, body in tutorial_blocks():
        if name is not None:
            path = src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    dist = src / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["xdsl.universe"]
    (dist / "entry_points.txt").write_text("[xdsl.universe]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return src


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("TINYMLIR_DEBUG", None)
    return env


def test_tutorial_files_are_complete():
    files = [name for name, _, _ in tutorial_blocks() if name]
    assert {"relu_plugin/fold_double_relu.py", "relu_plugin/universe.py", "pyproject.toml", "input.mlir"} <= set(files)
    body = dict((n, b) for n, _, b in tutorial_blocks() if n)["relu_plugin/fold_double_relu.py"]
    assert len(body.strip().splitlines()) <= 45  # "a pass in about 30 lines"


@pytest.mark.skipif(shutil.which("filecheck") is None, reason="filecheck not installed")
def test_tutorial_plugin_runs_in_tinymlir_opt(tmp_path):
    src = install_tutorial_plugin(tmp_path)
    env = _env(src)
    opt = [sys.executable, "-m", "tinymlir.tools.opt"]
    listed = subprocess.run([*opt, "--list-passes"], capture_output=True, text=True, env=env, cwd=src, timeout=120)
    assert listed.returncode == 0 and "fold-double-relu" in listed.stdout.split(), listed.stderr
    assert "warning" not in listed.stderr
    runs = [ln.split("RUN:", 1)[1].strip() for ln in (src / "input.mlir").read_text().splitlines() if "RUN:" in ln]
    assert len(runs) == 2
    for run in runs:
        tool_cmd, check_cmd = (shlex.split(part.replace("%s", "input.mlir")) for part in run.split("|"))
        assert tool_cmd[0] == "tinymlir-opt" and check_cmd[0] == "filecheck"
        r = subprocess.run([*opt, *tool_cmd[1:]], capture_output=True, text=True, env=env, cwd=src, timeout=120)
        assert r.returncode == 0 and r.stderr == "", (run, r.stderr)
        fc = subprocess.run(check_cmd, input=r.stdout, capture_output=True, text=True, cwd=src, timeout=60)
        assert fc.returncode == 0, (run, r.stdout, fc.stderr)
    # a bad option is the usual one-line error
    bad = subprocess.run([*opt, "input.mlir", "-p", "fold-double-relu{clip=maybe}"], capture_output=True, text=True,
                         env=env, cwd=src, timeout=120)
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert "invalid options for pass 'fold-double-relu'" in bad.stderr


def test_tutorial_python_snippet_runs(tmp_path):
    """The PassPipeline snippet (the python block that is not a file) runs as written."""
    src = install_tutorial_plugin(tmp_path)
    snippets = [body for name, lang, body in tutorial_blocks() if name is None and lang == "python"]
    assert len(snippets) == 1
    r = subprocess.run([sys.executable, "-c", snippets[0]], capture_output=True, text=True, env=_env(src), cwd=src,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nn.clip" in r.stdout and r.stdout.count("nn.relu") == 1, r.stdout
