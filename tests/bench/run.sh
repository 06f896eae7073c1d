#!/usr/bin/env bash
# The whole benchmark suite, from a clean clone: builds release binaries, installs the seed
# replica's Python packages, runs the micro-benchmarks, the sidecar-vs-seed footprint, the alert
# latency and the 10 000-stream load, and prints every table. Not part of the test command:
# figures vary from run to run. Tunables (environment): LOAD_STREAMS (10000), LOAD_DURATION (5m),
# LOAD_CONNECTIONS (= streams), LOAD_AGENTS_PER_STREAM (1; 10 = sidecars of ten agents, each
# round sent together), FOOTPRINT_DURATION (60s), INCIDENTS (20), SKIP_CRITERION=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

LOAD_STREAMS=${LOAD_STREAMS:-10000}
LOAD_DURATION=${LOAD_DURATION:-5m}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-$LOAD_STREAMS}
LOAD_AGENTS_PER_STREAM=${LOAD_AGENTS_PER_STREAM:-1}
FOOTPRINT_DURATION=${FOOTPRINT_DURATION:-60s}
INCIDENTS=${INCIDENTS:-20}

echo "== building release binaries" >&2
cargo build --release --workspace --bins >&2
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q requests DingtalkChatbot >&2
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
BIN=target/release

echo "# flumewatch benchmarks — $(date -u +%F) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(rustc --version)"
echo

if [ "${SKIP_CRITERION:-0}" != 1 ]; then
  echo "## Micro-benchmarks (criterion, median)"
  echo
  echo "| benchmark | time |"
  echo "|---|---:|"
  for spec in "flumewatch-sidecar parse" "flumewatch-aggregator evaluate" "flumewatch-aggregator message"; do
    set -- $spec
    cargo bench -q -p "$1" --bench "$2" -- --warm-up-time 1 --measurement-time 3 2>/dev/null \
      | awk '/^[A-Za-z_\/0-9.-]+ *$/ { name = $1 }
             $1 == "time:" || ($2 == "time:" && $1 != "change:") { if ($1 != "time:") name = $1; s = substr($0, index($0, "[") + 1); split(s, t, " ");
                            print "| " name " | " t[3] " " t[4] " |"; name = "" }'
  done
  echo
fi

echo "## Sidecar vs the seed script (a Jetty-like and a Python http.server fake Flume, same interval, same window)"
echo
$BIN/flumewatch-bench footprint --duration "$FOOTPRINT_DURATION"
echo

echo "## Alert latency (threshold crossed at the agent → DingTalk POST at the robot)"
echo
$BIN/flumewatch-bench alert-latency --incidents "$INCIDENTS"
echo

echo "## Load: $LOAD_STREAMS streams × $LOAD_AGENTS_PER_STREAM agents × 1 snapshot/s for $LOAD_DURATION"
echo
state=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$BIN/flumewatch-aggregator --grpc-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$http" \
  --state-dir "$state" --log-level warn >/dev/null 2>&1 &
agg=$!
trap 'kill $agg 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$http/-/ready')" 2>/dev/null && break
  sleep 0.1
done
idle=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$agg/status)
echo "aggregator idle RSS: $idle MiB"
echo '```'
$BIN/flumewatch-load --aggregator "http://127.0.0.1:$port" --streams "$LOAD_STREAMS" --rate 1 \
  --agents-per-stream "$LOAD_AGENTS_PER_STREAM" --duration "$LOAD_DURATION" \
  --connections "$LOAD_CONNECTIONS" --pid "$agg" --metrics "127.0.0.1:$http"
echo '```'
