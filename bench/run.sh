#!/usr/bin/env bash
# wsgate against its peers, side by side in one run, on this machine.
#
#   bench/run.sh                 # 3 rounds of 10 s phases (about 20 minutes)
#   ROUNDS=1 SECS=4 bench/run.sh # a quick look
#   PROXIES="wsgate nginx" bench/run.sh
#
# Every proxy does the same job: TLS termination with the same self-signed ECDSA P-256
# certificate, `Upgrade: websocket` to the echo backend, everything else to the HTTP backend,
# keep-alive to upstreams, forwarding headers. The proxy runs on CPU 0 (taskset), the load
# generators and backends on CPU 1. Proxies alternate within each round; the table shows each
# proxy's median over the rounds and the ratio wsgate/peer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
# 10,000 is the target; each process here may hold at most 20,000 descriptors (the hard
# limit), and a proxy needs two per relayed connection, so 9,500 is what fits.
IDLE_CONNS=${IDLE_CONNS:-9500}
PROXIES=${PROXIES:-"wsgate nginx haproxy stunnel+varnish ceiling"}

source bench/lib.sh
bench_setup
taskset -c 1 $bin/examples/bench_backend --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null & pids+=($!)
# The ceiling: rustls terminating at the backend itself, on the proxy core.
taskset -c 0 $bin/examples/bench_backend --listen 127.0.0.1:9441 --tls 127.0.0.1:9443 \
  --cert "$work/cert.pem" --key "$work/key.pem" >/dev/null & pids+=($!)
taskset -c 0 "${wsgate_cmd[@]}" >"$work/wsgate.log" 2>&1 & pids+=($!); wsgate_pid=$!
taskset -c 0 "${nginx_cmd[@]}" & pids+=($!); nginx_pid=$!
taskset -c 0 "${haproxy_cmd[@]}" & pids+=($!); haproxy_pid=$!
taskset -c 0 "${stunnel_cmd[@]}" >/dev/null 2>&1 & pids+=($!); stunnel_pid=$!
taskset -c 0 "${varnish_cmd[@]}" >/dev/null 2>&1 & pids+=($!)

for port in 9101 9102 9443 9202 9302 9402 9502 9510; do wait_port $port; done

port_of() { case $1 in wsgate) echo 9202;; nginx) echo 9302;; haproxy) echo 9402;; stunnel+varnish) echo 9502;; ceiling) echo 9443;; esac; }
# Every process of a proxy, for RSS and CPU.
pids_of() {
  case $1 in
    wsgate) echo "$wsgate_pid";;
    nginx) echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')";;
    haproxy) echo "$haproxy_pid";;
    stunnel+varnish) echo "$stunnel_pid $(pgrep -f "varnishd.*$work" | tr '\n' ' ')";;
    ceiling) pgrep -f "bench_backend --listen 127.0.0.1:9441" | tr '\n' ' ';;
  esac
}
rss_kib() { local t=0; for p in $(pids_of "$1"); do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null || echo 0))); done; echo $t; }
cpu_ticks() { local t=0; for p in $(pids_of "$1"); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
# User and system ticks of a proxy's processes, "user sys".
cpu_split() { local u=0 s=0 a b; for p in $(pids_of "$1"); do read -r a b < <(awk '{print $14, $15}' /proc/$p/stat 2>/dev/null || echo 0 0); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
# Busy and total ticks of each core, "busy0 total0 busy1 total1": which side of the bench was
# the bottleneck (a load-generator core at 100 % caps every proxy alike).
cores() { awk '/^cpu[01] /{printf "%d %d ", $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
# Records the proxy's and the load generator's core busy % of one phase, from two cores() samples.
record_cores() {
  local phase=$1 b0 t0 b1 t1 a0 u0 a1 u1; shift
  read -r b0 t0 b1 t1 a0 u0 a1 u1 <<<"$*"
  record "$proxy" "core0_busy_$phase" "$(awk -v b=$((a0 - b0)) -v t=$((u0 - t0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')"
  record "$proxy" "core1_busy_$phase" "$(awk -v b=$((a1 - b1)) -v t=$((u1 - t1)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'; }
jget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

results="$work/results.tsv"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" | tee -a "$results"; }
hz=$(getconf CLK_TCK)

# Resident memory per idle WSS connection, measured once per proxy while it is fresh (memory
# a proxy freed after earlier phases would hide what new connections cost).
measure_idle() {
  local proxy=$1 port
  port=$(port_of "$proxy")
  sleep 1
  base=$(rss_kib "$proxy")
  fifo="$work/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  taskset -c 1 $bin/examples/wsload idle --tls --connect 127.0.0.1:$port --host bench.test --conns "$IDLE_CONNS" --seconds 120 <"$fifo" >"$work/idle.out" 2>"$work/idle.err" & idle_pid=$!
  exec 4>"$fifo"
  for _ in $(seq 1200); do grep -q ready "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
  opened=$(awk '/ready/{print $2}' "$work/idle.out"); opened=${opened:-0}
  sleep 2
  loaded=$(rss_kib "$proxy")
  exec 4>&-
  wait $idle_pid || true
  if [ "$opened" -gt 0 ]; then
    record "$proxy" "rss_kib_per_idle_wss" "$(awk -v a="$loaded" -v b="$base" -v n="$opened" 'BEGIN { printf "%.1f", (a - b) / n }')"
  fi
  record "$proxy" "idle_wss_opened" "$opened"
  # Let the proxy finish tearing the connections down (Varnish keeps a thread per pipe) before
  # the next proxy on the same core is measured.
  sleep 10
}

for proxy in $PROXIES; do
  echo "== idle connections: $proxy"
  measure_idle "$proxy"
done

for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  for proxy in $PROXIES; do
    port=$(port_of "$proxy")
    url="https://127.0.0.1:$port/"
    c_before=$(cores); s_before=$(cpu_split "$proxy")
    out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency -H 'Host: bench.test' "$url")
    c_after=$(cores); s_after=$(cpu_split "$proxy")
    record "$proxy" "https_rps" "$(echo "$out" | awk '/Requests\/sec/{print $2}')"
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    read -r u0 k0 u1 k1 <<<"$s_before $s_after"
    record "$proxy" "https_user_us_per_req" "$(awk -v t=$((u1 - u0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')"
    record "$proxy" "https_sys_us_per_req" "$(awk -v t=$((k1 - k0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')"
    record_cores https $c_before $c_after
    record "$proxy" "https_p50_ms" "$(ms "$(echo "$out" | awk '$1=="50%"{print $2}')")"
    record "$proxy" "https_p99_ms" "$(ms "$(echo "$out" | awk '$1=="99%"{print $2}')")"
    out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" -H 'Host: bench.test' -H 'Connection: close' "$url")
    record "$proxy" "new_tls_per_s" "$(echo "$out" | awk '/Requests\/sec/{print $2}')"
    c_before=$(cores); before=$(cpu_ticks "$proxy")
    out=$(taskset -c 1 $bin/examples/wsload connect --tls --connect 127.0.0.1:$port --host bench.test --concurrency 50 --seconds "$SECS")
    c_after=$(cores); after=$(cpu_ticks "$proxy")
    record "$proxy" "new_wss_per_s" "$(jget "$out" conns_per_sec)"
    record "$proxy" "new_wss_cpu_us" "$(awk -v t=$((after - before)) -v hz="$hz" -v n="$(jget "$out" connections)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')"
    record_cores new_wss $c_before $c_after
    # Post-quantum key exchange (X25519MLKEM768, as Chrome and Firefox offer first): rustls
    # speaks it (wsgate and the ceiling); the peers' OpenSSL 3.0 does not.
    if [ "$proxy" = wsgate ] || [ "$proxy" = ceiling ]; then
      before=$(cpu_ticks "$proxy")
      out=$(taskset -c 1 $bin/examples/wsload connect --tls --kx pq --connect 127.0.0.1:$port --host bench.test --concurrency 50 --seconds "$SECS")
      after=$(cpu_ticks "$proxy")
      record "$proxy" "new_wss_per_s_pq" "$(jget "$out" conns_per_sec)"
      record "$proxy" "new_wss_cpu_us_pq" "$(awk -v t=$((after - before)) -v hz="$hz" -v n="$(jget "$out" connections)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')"
    fi
    for conns in 100 1000; do
      c_before=$(cores); before=$(cpu_ticks "$proxy")
      out=$(taskset -c 1 $bin/examples/wsload echo --tls --connect 127.0.0.1:$port --host bench.test --conns $conns --seconds "$SECS")
      c_after=$(cores); after=$(cpu_ticks "$proxy")
      record_cores "echo_$conns" $c_before $c_after
      record "$proxy" "ws_p50_ms_$conns" "$(jget "$out" p50_ms)"
      record "$proxy" "ws_p99_ms_$conns" "$(jget "$out" p99_ms)"
      if [ "$conns" = 100 ]; then
        msgs=$(jget "$out" messages)
        record "$proxy" "cpu_s_per_million_msgs" "$(awk -v t=$((after - before)) -v hz="$hz" -v m="$msgs" 'BEGIN { printf "%.2f", (t / hz) / m * 1e6 }')"
      fi
    done
    sleep 2
  done
done

echo
python3 - "$results" "$PROXIES" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    proxy, metric, value = line.rstrip("\n").split("\t")
    try:
        rows.setdefault(metric, {}).setdefault(proxy, []).append(float(value))
    except ValueError:
        pass
proxies = sys.argv[2].split()
labels = {
    "https_rps": "HTTPS keep-alive req/s (50 conns)", "https_p50_ms": "HTTPS p50 ms", "https_p99_ms": "HTTPS p99 ms",
    "new_tls_per_s": "new TLS connections/s", "new_wss_per_s": "new WSS connections/s",
    "ws_p50_ms_100": "WS echo p50 ms (100 conns)", "ws_p99_ms_100": "WS echo p99 ms (100 conns)",
    "ws_p50_ms_1000": "WS echo p50 ms (1000 conns)", "ws_p99_ms_1000": "WS echo p99 ms (1000 conns)",
    "rss_kib_per_idle_wss": "RSS KiB per idle WSS conn", "idle_wss_opened": "idle WSS conns held",
    "cpu_s_per_million_msgs": "CPU s per million WS msgs (100 conns)",
    "https_user_us_per_req": "HTTPS CPU us per request, user", "https_sys_us_per_req": "HTTPS CPU us per request, kernel",
    "new_wss_cpu_us": "CPU us per new WSS conn",
    "new_wss_per_s_pq": "new WSS connections/s, X25519MLKEM768 client",
    "new_wss_cpu_us_pq": "CPU us per new WSS conn, X25519MLKEM768 client",
    "core0_busy_https": "proxy core busy % (HTTPS)", "core1_busy_https": "load core busy % (HTTPS)",
    "core0_busy_new_wss": "proxy core busy % (new WSS)", "core1_busy_new_wss": "load core busy % (new WSS)",
    "core0_busy_echo_100": "proxy core busy % (echo 100)", "core1_busy_echo_100": "load core busy % (echo 100)",
    "core0_busy_echo_1000": "proxy core busy % (echo 1000)", "core1_busy_echo_1000": "load core busy % (echo 1000)",
}
# Per proxy core: what one core of the proxy would do, from the proxy's own CPU per unit of
# work (the fair ratio on a 2-core machine where the load generator's core saturates first).
def per_core(metric, to):
    if metric in rows:
        rows[to] = {p: [to_rate(v) for v in vs if v > 0] for p, vs in rows[metric].items()}
to_rate = lambda us: 1e6 / us
per_core("new_wss_cpu_us", "new_wss_per_core")
per_core("new_wss_cpu_us_pq", "new_wss_per_core_pq")
per_core("cpu_s_per_million_msgs", "ws_msgs_per_core")
if "https_user_us_per_req" in rows and "https_sys_us_per_req" in rows:
    rows["https_rps_per_core"] = {
        p: [1e6 / (u + k) for u, k in zip(rows["https_user_us_per_req"][p], rows["https_sys_us_per_req"].get(p, [])) if u + k > 0]
        for p in rows["https_user_us_per_req"]
    }
labels.update({
    "https_rps_per_core": "HTTPS keep-alive req/s per proxy core",
    "new_wss_per_core": "new WSS connections/s per proxy core",
    "new_wss_per_core_pq": "new WSS connections/s per proxy core, X25519MLKEM768 client",
    "ws_msgs_per_core": "WS messages/s per proxy core (100 conns)",
})
rows = {m: {p: v for p, v in ps.items() if v} for m, ps in rows.items()}
peers = [p for p in proxies if p != "wsgate"]
header = ["metric"] + proxies + [f"wsgate/{p}" for p in peers]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for metric, label in labels.items():
    if metric not in rows:
        continue
    med = {p: statistics.median(v) for p, v in rows[metric].items()}
    cells = [label] + [f"{med[p]:,.2f}" if p in med else "n/a" for p in proxies]
    for p in peers:
        cells.append(f"{med['wsgate'] / med[p]:.2f}" if "wsgate" in med and med.get(p) else "n/a")
    print("| " + " | ".join(cells) + " |")
PY
