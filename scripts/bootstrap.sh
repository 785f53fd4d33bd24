#!/usr/bin/env bash
# Create .venv (if missing) and install Vigil with its dev tools. Idempotent and fast when nothing
# changed: a stamp keyed on the files that define the install skips the whole step.
#
# The order matters on this kind of machine:
# 1. torch==2.13.0 first: pip takes the CPU build from local disk; any other torch spec (or a
#    package asking for plain "torch" before it is installed) pulls GBs of CUDA wheels.
# 2. face-recognition with --no-deps: its "dlib" requirement would compile dlib for many minutes;
#    pyproject.toml asks for dlib-bin (the prebuilt wheel) and face_recognition_models instead,
#    which needs pkg_resources, hence setuptools<81.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
"$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' || {
  echo "bootstrap: Vigil needs Python 3.11 or 3.12 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

key=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
stamp="$VENV/.stamp-$key"
if [ -f "$stamp" ]; then
  exit 0
fi

echo "bootstrap: installing into $VENV (first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true; }
pip_install --upgrade pip "setuptools<81" wheel
pip_install "torch==2.13.0"
pip_install -e ".[dev]"
pip_install --no-deps "face-recognition==1.3.0"
"$VENV/bin/python" -W ignore -c "import vigil, torch, ray, face_recognition, rapidocr_onnxruntime" \
  || { echo "bootstrap: the install is incomplete (see the errors above)" >&2; exit 1; }
rm -f "$VENV"/.stamp-*
touch "$stamp"
echo "bootstrap: done"
