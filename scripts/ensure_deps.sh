#!/usr/bin/env bash
# Installs what the test suites need, idempotently, so `deno task test` works on a fresh machine:
#   etcd-server and nats-server (Debian), ai-dynamo-runtime/ai-dynamo 1.6.1 (PyPI, project venv),
#   kube-apiserver built from Kubernetes sources through the Go module proxy (cached in .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure_deps: installing ${missing[*]} from Debian" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/setup_python_env.sh >&2

if ! command -v go >/dev/null 2>&1; then
  echo "ensure_deps: the Go toolchain is required to build kube-apiserver (tests/adapter, tests/e2e)" >&2
  exit 1
fi
bash scripts/build_kube_apiserver.sh >&2
