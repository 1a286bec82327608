#!/usr/bin/env bash
# What keepalive costs idle sockets, side by side in one run: two wsgate processes serve the
# same route, one with `keepalive: { interval: 30s, timeout: 10s }`, one without. Each in turn
# holds IDLE_CONNS idle WSS connections whose client reads them (so every Ping gets its Pong,
# as a browser's would) for HOLD seconds. Reported: RSS per connection (fresh process, first
# round) and the proxy's CPU over the hold, as a share of one core and per Ping sent.
#
#   bench/keepalive.sh                      # 9,500 sockets, 65 s hold (two rounds of Pings), 2 rounds
#   IDLE_CONNS=2000 HOLD=35 ROUNDS=1 bench/keepalive.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_CONNS=${IDLE_CONNS:-9500}
HOLD=${HOLD:-65}
ROUNDS=${ROUNDS:-2}

source bench/lib.sh
bench_setup
mkdir -p "$work/routes-ka"
sed 's|websocket: { backend: { address: "127.0.0.1:9102" } }|websocket: { backend: { address: "127.0.0.1:9102" }, keepalive: { interval: 30s, timeout: 10s } }|' \
  "$work/routes/bench.yaml" > "$work/routes-ka/bench.yaml"
grep -q keepalive "$work/routes-ka/bench.yaml"
taskset -c 1 $bin/examples/bench_backend --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null & pids+=($!)
taskset -c 0 "${wsgate_cmd[@]}" >"$work/wsgate.log" 2>&1 & pids+=($!); plain_pid=$!
taskset -c 0 "$bin/wsgate" run --routes "$work/routes-ka" --http-listen 127.0.0.1:9211 \
  --https-listen 127.0.0.1:9212 --admin-listen 127.0.0.1:9213 --access-log=false --log-level warn \
  --drain-delay 0s >"$work/wsgate-ka.log" 2>&1 & pids+=($!); ka_pid=$!
for port in 9101 9102 9202 9212; do wait_port $port; done
hz=$(getconf CLK_TCK)
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }

hold() {
  local name=$1 pid=$2 port=$3 round=$4 fifo="$work/idle.fifo" base loaded t0 t1 opened out
  rm -f "$fifo"; mkfifo "$fifo"
  base=$(rss "$pid")
  taskset -c 1 $bin/examples/wsload idle --tls --answer-pings --connect 127.0.0.1:$port --host bench.test \
    --conns "$IDLE_CONNS" --seconds $((HOLD + 120)) <"$fifo" >"$work/idle.out" 2>"$work/idle.err" & local idle_pid=$!
  exec 4>"$fifo"
  for _ in $(seq 1200); do grep -q ready "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
  opened=$(awk '/ready/{print $2}' "$work/idle.out")
  sleep 2
  loaded=$(rss "$pid"); t0=$(ticks "$pid")
  sleep "$HOLD"
  t1=$(ticks "$pid")
  exec 4>&-
  wait $idle_pid || true
  out=$(grep mode "$work/idle.out")
  printf '%s\tround %s\topened %s\theld %s\tpings %s\trss_kib_per_conn %s\tcpu_pct_of_core %s\n' \
    "$name" "$round" "$opened" "$(jget "$out" held)" "$(jget "$out" pings)" \
    "$(awk -v a="$loaded" -v b="$base" -v n="$opened" 'BEGIN { printf "%.1f", (a - b) / n }')" \
    "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$HOLD" 'BEGIN { printf "%.2f", 100 * t / hz / s }')" | tee -a "$work/ka.tsv"
  sleep 10
}
jget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    hold wsgate "$plain_pid" 9202 "$round"; hold wsgate+keepalive "$ka_pid" 9212 "$round"
  else
    hold wsgate+keepalive "$ka_pid" 9212 "$round"; hold wsgate "$plain_pid" 9202 "$round"
  fi
done
python3 - "$work/ka.tsv" "$HOLD" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def field(r, k):
    for f in r:
        if f.startswith(k + " "):
            return float(f.split(" ", 1)[1])
by = {}
for r in rows:
    by.setdefault(r[0], []).append(r)
first = {n: [r for r in rs if field(r, "round") == 1][0] for n, rs in by.items()}
rss = {n: field(first[n], "rss_kib_per_conn") for n in by}
cpu = {n: statistics.median(field(r, "cpu_pct_of_core") for r in rs) for n, rs in by.items()}
pings = statistics.median(field(r, "pings") for r in by["wsgate+keepalive"])
print()
print("| wsgate, idle WSS | RSS KiB per conn (fresh) | CPU % of one core (median) | Pings answered by the clients per hold |")
print("|---|---|---|---|")
for n in by:
    print(f"| {n} | {rss[n]:.1f} | {cpu[n]:.2f} | {statistics.median(field(r, 'pings') for r in by[n]):.0f} |")
print(f"\nRSS ratio keepalive/plain: {rss['wsgate+keepalive'] / rss['wsgate']:.3f}")
extra = (cpu["wsgate+keepalive"] - cpu["wsgate"]) / 100 * float(sys.argv[2])
if pings:
    # Each client Ping has a backend Ping beside it: two Pings and two Pongs per pair.
    print(f"CPU per client+backend Ping pair: {extra / pings * 1e6:.1f} us")
PY
