#!/usr/bin/env bash
# Create /work/main/.cache/venv with the real Dynamo Python runtime used as the interop reference:
#   ai-dynamo-runtime==1.6.1  (Rust core + dynamo.runtime; small deps: pydantic, uvloop)
#   ai-dynamo==1.6.1 --no-deps (dynamo.planner / dynamo.global_planner sources) + only the deps those
#     modules import: pyyaml numpy msgspec scikit-learn kubernetes<33 (and msgpack for our drivers).
# Why --no-deps: ai-dynamo's declared deps include transformers, redis, pyzmq, ... and `aisimulate`,
# which PyPI only ships as a "wheel_stub" sdist that cannot be built here (the real wheel lives on
# NVIDIA's own index). dynamo.planner imports `aisimulate_core.sdk` at module level, so an import-only
# stub package `aisimulate_core` is written into the venv (any real use raises RuntimeError).
# Idempotent: a marker file records what was installed; a rerun with the same marker does nothing.
# Prints the venv python path on the last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/venv"
PY="$VENV/bin/python"
MARKER="$VENV/.dynamo-1.6.1-installed"
STAMP="v3 ai-dynamo-runtime==1.6.1 ai-dynamo==1.6.1(no-deps) pydantic<=2.13.5 kubernetes<33 stub:aisimulate_core"
BASE_PY="${PYTHON:-python3}"

if [[ -x "$PY" && -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" ]]; then
  echo "$PY"
  exit 0
fi

mkdir -p "$ROOT/.cache"
if [[ ! -x "$PY" ]]; then
  "$BASE_PY" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true

LOG="$VENV/setup.log"
pipq() { "$PY" -m pip install -q "$@" >>"$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }; }
CONSTRAINTS="$VENV/constraints.txt"
cat > "$CONSTRAINTS" <<'C'
pydantic>=2.10.6,<=2.13.5
kubernetes>=32.0.1,<33.0.0
C
pipq -c "$CONSTRAINTS" "ai-dynamo-runtime==1.6.1"
pipq --no-deps "ai-dynamo==1.6.1"
pipq -c "$CONSTRAINTS" pyyaml numpy msgspec scikit-learn "kubernetes>=32.0.1,<33.0.0" msgpack "pydantic>=2.10.6,<=2.13.5"

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! "$PY" -c 'import importlib.util,sys; sys.exit(0 if importlib.util.find_spec("aisimulate_core") else 1)' 2>/dev/null; then
  mkdir -p "$SITE/aisimulate_core/sdk"
  cat > "$SITE/aisimulate_core/__init__.py" <<'P'
"""Import-only stub written by scripts/setup_python_env.sh: the real aisimulate wheel is not on
PyPI (only a wheel_stub sdist). Lets dynamo.planner / dynamo.global_planner import; any use raises."""
P
  cat > "$SITE/aisimulate_core/sdk/__init__.py" <<'P'
class _Unavailable:
    def __init__(self, *a, **k):
        raise RuntimeError("aisimulate_core is an import-only stub (real package not installable from PyPI)")


ForwardPassPerfModelConfig = type("ForwardPassPerfModelConfig", (_Unavailable,), {})
RustForwardPassPerfModel = type("RustForwardPassPerfModel", (_Unavailable,), {})


def __getattr__(name):
    return type(name, (_Unavailable,), {})
P
fi

# Verify the modules the interop drivers use.
"$PY" - <<'V'
import importlib
for m in ["dynamo.runtime", "dynamo.planner.connectors.protocol",
          "dynamo.planner.connectors.clients.remote_client",
          "dynamo.planner.connectors.global_planner",
          "dynamo.global_planner.scale_handler", "msgpack"]:
    importlib.import_module(m)
V
echo "$STAMP" > "$MARKER"
echo "$PY"
