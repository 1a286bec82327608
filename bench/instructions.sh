#!/usr/bin/env bash
# User-space instructions per proxied HTTPS keep-alive request, counted by valgrind's callgrind
# for wsgate and its peers: exact and repeatable to about 1 %, where timings on this shared
# machine move by 10 %. Use it to A/B a change to the request path.
#
#   bench/instructions.sh                                  # wsgate, nginx, HAProxy
#   PROXIES=wsgate WSGATE=/tmp/old-wsgate bench/instructions.sh   # another wsgate build
#   KEEP=/tmp/cg-new PROXIES=wsgate bench/instructions.sh    # keep the dumps for callgrind_annotate
#
# Same job and configuration as bench/run.sh (bench/lib.sh). Each proxy runs alone under
# callgrind on CPU 0, wrk and the backend on CPU 1. After a warm-up (pools, caches), two loads of
# different lengths are counted separately; each opens the same 50 connections (TLS handshakes
# included), so the difference between the two counts divided by the difference in requests is
# the cost of a request alone. Kernel time is not counted: bench/run.sh reports it (every proxy
# spends about the same there).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
PROXIES=${PROXIES:-"wsgate nginx haproxy"}

command -v valgrind >/dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
source bench/lib.sh
bench_setup
if [ -n "${WSGATE:-}" ]; then wsgate_cmd[0]=$WSGATE; fi
# One process, so the counters callgrind keeps are the whole proxy's.
nginx_cmd=(nginx -c "$work/nginx.conf" -g 'daemon off; master_process off;')

taskset -c 1 "$bin/examples/bench_backend" --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null &
pids+=($!)
wait_port 9101

load() { taskset -c 1 wrk -t1 -c50 -d"$1s" -H 'Host: bench.test' "https://127.0.0.1:$2/"; }
declare -A per_request
for proxy in $PROXIES; do
  case $proxy in
    wsgate) cmd=("${wsgate_cmd[@]}"); port=9202;;
    nginx) cmd=("${nginx_cmd[@]}"); port=9302;;
    haproxy) cmd=("${haproxy_cmd[@]}"); port=9402;;
    *) echo "unknown proxy $proxy" >&2; exit 2;;
  esac
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg.$proxy.%p" "${cmd[@]}" \
    >"$work/$proxy.valgrind.log" 2>&1 &
  vg=$!; pids+=("$vg")
  wait_port "$port"
  load 3 "$port" >/dev/null
  callgrind_control -z "$vg" >/dev/null 2>&1
  counts=()
  for window in 1 2; do
    secs=$((window == 1 ? 2 : SECS + 2))
    out=$(load "$secs" "$port")
    callgrind_control -d "$vg" >/dev/null 2>&1
    dump="$work/cg.$proxy.$vg.$window"
    for _ in $(seq 100); do [ -s "$dump" ] && break; sleep 0.1; done
    counts+=("$(echo "$out" | awk '/requests in/{print $1}')" "$(awk '/^(summary|totals):/{print $2; exit}' "$dump")")
  done
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work/cg.$proxy.$vg".* "$KEEP/"; fi
  requests=$((counts[2] - counts[0]))
  per_request[$proxy]=$(((counts[3] - counts[1]) / requests))
  echo "$proxy: ${counts[0]} and ${counts[2]} requests, ${per_request[$proxy]} user instructions per request"
  kill "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
done

if [ -n "${per_request[wsgate]:-}" ]; then
  for proxy in $PROXIES; do
    [ "$proxy" = wsgate ] && continue
    awk -v a="${per_request[wsgate]}" -v b="${per_request[$proxy]}" -v p="$proxy" \
      'BEGIN { printf "wsgate/%s: %.2f\n", p, a / b }'
  done
fi
