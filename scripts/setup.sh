#!/usr/bin/env bash
# Idempotent set-up of tinymlir on a Debian machine: system packages, then the Python
# package (editable, with the dev extra). Runs as root, or uses sudo for apt.
# Uses the active virtualenv's Python if there is one, else python3. Fast when nothing
# changed: apt is skipped when every package is installed, pip when pyproject.toml,
# the Python and the checkout are those of the last successful run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ==== Debian packages =====================================================================
# gcc builds the generated C for the host; the arm-none-eabi toolchain with picolibc and
# QEMU build and run it on an emulated Cortex-M4 (mps2-an386); clang is the second compiler
# of the warning/sanitizer matrix (libclang-rt-14-dev: its ASan/UBSan runtimes, bookworm's clang 14).
DEBIAN_PACKAGES=(gcc clang libclang-rt-14-dev gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "setup.sh: need root or sudo for: $*" >&2
    return 1
  fi
}

install_debian_packages() {
  local packages=("${DEBIAN_PACKAGES[@]}") missing=() p
  if ! python3 -m pip --version >/dev/null 2>&1 && [ -z "${VIRTUAL_ENV:-}" ]; then
    packages+=(python3-pip)
  fi
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup.sh: Debian packages already installed: ${packages[*]}"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: warning: no apt-get; install these yourself: ${missing[*]}" >&2
    return 0
  fi
  echo "setup.sh: installing Debian packages: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
# ==========================================================================================

python_cmd() {
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    echo "$VIRTUAL_ENV/bin/python"
  else
    echo python3
  fi
}

install_python_package() {
  local py stamp_dir stamp want
  py="$(python_cmd)"
  stamp_dir=build
  stamp="$stamp_dir/.setup-stamp"
  want="$("$py" -c 'import sys; print(sys.executable)') $(pwd) $(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
     [ "$("$py" -c 'import os, tinymlir; print(os.path.dirname(os.path.dirname(os.path.abspath(tinymlir.__file__))))' 2>/dev/null)" = "$(pwd)" ]; then
    echo "setup.sh: tinymlir already installed from $(pwd) for $py"
    return 0
  fi
  local flags=(--disable-pip-version-check)
  if [ "$(id -u)" -eq 0 ]; then flags+=(--root-user-action=ignore); fi
  # A Debian system Python refuses pip outside a venv (PEP 668); CI machines are throwaway.
  if [ -z "${VIRTUAL_ENV:-}" ] && "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    flags+=(--break-system-packages)
  fi
  echo "setup.sh: $py -m pip install -e '.[dev]'"
  "$py" -m pip install "${flags[@]}" -e '.[dev]'
  mkdir -p "$stamp_dir"
  echo "$want" > "$stamp"
}

install_debian_packages
install_python_package
