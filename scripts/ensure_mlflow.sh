#!/usr/bin/env bash
# Make sure a separate virtualenv with open-source MLflow exists: the MLflow integration test
# (tests/integration/test_mlflow.py, marker `slow`) runs a real tracking server on loopback.
# MLflow stays out of Quorum's own dependencies; it lives in its own venv (QUORUM_MLFLOW_VENV,
# default .venv-mlflow next to this checkout). Fails loudly when it cannot be installed.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${QUORUM_MLFLOW_VENV:-.venv-mlflow}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/mlflow" ] && "$VENV/bin/python" -c 'import mlflow' >/dev/null 2>&1; then
    exit 0
fi
echo "MLflow is not installed in $VENV; installing it (about 90 s, once)" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'mlflow>=3.17,<4'
if ! [ -x "$VENV/bin/mlflow" ]; then
    echo "mlflow is still missing from $VENV after pip install" >&2
    exit 1
fi
