#!/usr/bin/env bash
# Creates <repo>/.venv with torch (CPU), transformers and safetensors for the golden-value tools.
# Python is a dev tool only: CI and users never run it; its outputs are committed.
# Installs from this machine's offline indexes (the default PyPI index is unreachable here).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${repo_root}/.venv"
python_bin="${PYTHON:-python3}"

if [ ! -x "${venv}/bin/python" ]; then
  "${python_bin}" -m venv "${venv}"
fi

pip_offline=(
  --index-url file:///opt/pypi-more/simple
  --extra-index-url file:///opt/pypi/simple
  --find-links /opt/wheels
)

"${venv}/bin/python" -m pip install --quiet "${pip_offline[@]}" --upgrade pip
"${venv}/bin/python" -m pip install "${pip_offline[@]}" \
  "torch==2.13.*" "transformers==5.18.*" safetensors

"${venv}/bin/python" - <<'PY'
import safetensors, torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, safetensors {safetensors.__version__}")
PY
