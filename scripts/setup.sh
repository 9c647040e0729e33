#!/usr/bin/env bash
# Fresh machine -> ready: Debian's Fashion-MNIST (when apt-get is there), a virtual environment in .venv with
# the pinned versions of every package (constraints.txt), and vae-cli installed in it (editable, with dev tools).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
  echo "setup: installing Debian's dataset-fashion-mnist"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist
fi

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# constraints.txt pins torch==2.14.1 / torchvision==0.29.1 (they must match) and every other package.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,trackers]"
# The MLflow tracking server the tests start: MLflow's server needs SQLAlchemy 2, which the Optuna sweeper's
# optuna 2.10 in .venv cannot use, so it gets an environment of its own (vae-cli talks to it over HTTP).
[ -x .venv-mlflow/bin/python ] || "$python" -m venv .venv-mlflow
.venv-mlflow/bin/python -m pip install -q --disable-pip-version-check -c constraints-mlflow-server.txt mlflow
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
