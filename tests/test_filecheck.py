"""Runs the lit/filecheck suite (tests/filecheck) as one pytest test, so that
`bash scripts/test.sh` (pytest) runs it too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).parent / "filecheck"


def test_lit_suite_passes():
    # `python -m lit` does not exist (lit has no __main__), so call lit's entry point.
    r = subprocess.run(
        [sys.executable, "-c", "import sys, lit.main; sys.exit(lit.main.main())", "-v", str(SUITE)],
        capture_output=True, text=True, timeout=1800,
    )
    report = r.stdout[-20000:] + r.stderr[-5000:]
    assert r.returncode == 0, report
    assert "Passed" in r.stdout, report
