#!/usr/bin/env bash
# Set up, then run the whole test suite (pytest, which also runs the lit/filecheck tests).
# Extra arguments go to pytest: bash scripts/test.sh -k quant
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY="$VIRTUAL_ENV/bin/python"; else PY=python3; fi

args=(-q)
if "$PY" -c 'import xdist' >/dev/null 2>&1; then
  args+=(-n 2)
else
  echo "test.sh: pytest-xdist is not installed; running tests serially" >&2
fi

status=0
"$PY" -m pytest "${args[@]}" tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
