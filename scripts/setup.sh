#!/usr/bin/env bash
# Install everything streamwatch needs on a fresh Debian/Ubuntu machine, idempotently:
# Debian packages (ffmpeg, mosquitto, libjemalloc2) and a Python venv in .venv with the project,
# its trainer extra (CPU torch) and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
for pkg in ffmpeg mosquitto mosquitto-clients python3-venv libjemalloc2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing Python packages"
# The CPU build of torch first: a bare 'torch' requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check 'torch==2.13.0' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/pip install -q --disable-pip-version-check -e '.[train,test,openvino]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import streamwatch, cv2, onnxruntime, paho.mqtt, torch; print('==> ready: streamwatch', streamwatch.__version__, '| torch', torch.__version__)"
