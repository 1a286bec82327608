#!/usr/bin/env bash
# Throughput cost of metrics recording: the current tree against a revision from before metrics
# existed (default 1c4eda5), same machine, same run, alternating, medians of N rounds.
# wsgate pinned to CPU 0; wrk and the backend (the demo app) on CPU 1.
# Usage: bench/metrics-cost.sh [BASE_REV] [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:-1c4eda5}
rounds=${2:-6}
secs=${3:-6}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q
git worktree add -q "$work/base" "$base_rev"
(cd "$work/base" && CARGO_TARGET_DIR="$work/target" cargo build --release -q)

for port in 5600 5700 5701 5702 5710 5711 5712; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is in use: stop whatever listens there first" >&2
    exit 1
  fi
done
mkdir "$work/routes"
cat > "$work/routes/r.yaml" <<'YAML'
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: r, namespace: default }
spec:
  hostnames: [bench.test]
  rules:
    - http: { backend: { address: "127.0.0.1:5600" } }
YAML
taskset -c 1 target/release/wsgate demo --app-only --app-listen 127.0.0.1:5600 >/dev/null 2>&1 & pids+=($!)
start() { # binary port extra-args...
  local bin=$1 port=$2; shift 2
  taskset -c 0 "$bin" run --routes "$work/routes" --http-listen 127.0.0.1:$port \
    --https-listen 127.0.0.1:$((port + 1)) --admin-listen 127.0.0.1:$((port + 2)) --log-level warn "$@" >/dev/null 2>&1 &
  pids+=($!)
}
start target/release/wsgate 5700 --access-log=false
start "$work/target/release/wsgate" 5710
for port in 5600 5700 5710; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
for _ in $(seq "$rounds"); do
  for pair in "metrics:5700" "baseline:5710"; do
    name=${pair%%:*} port=${pair##*:}
    rps=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" -H 'Host: bench.test' "http://127.0.0.1:$port/healthz" | awk '/Requests\/sec/{print $2}')
    echo "$name $rps"
  done
done | tee "$work/results"
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rps = line.split()
    runs.setdefault(name, []).append(float(rps))
m, b = statistics.median(runs["metrics"]), statistics.median(runs["baseline"])
print(f"median req/s: with metrics {m:.0f}, baseline {b:.0f}, ratio {m / b:.3f} ({(1 - m / b) * 100:.1f}% loss)")
PY
