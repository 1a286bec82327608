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

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || need+=(stunnel4)
command -v varnishd >/dev/null || need+=(varnish)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
ulimit -n "$(ulimit -Hn)"

cargo build --release --bin wsgate --example bench_backend --example wsload -q
bin=target/release
work=$(mktemp -d /tmp/wsgate-bench.XXXXXX)
# Varnish's child and nginx's worker run as unprivileged users and must read their files.
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -f "varnishd.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- certificate, backends -------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"
taskset -c 1 $bin/examples/bench_backend --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null & pids+=($!)
# The ceiling: rustls terminating at the backend itself, on the proxy core.
taskset -c 0 $bin/examples/bench_backend --listen 127.0.0.1:9441 --tls 127.0.0.1:9443 \
  --cert "$work/cert.pem" --key "$work/key.pem" >/dev/null & pids+=($!)

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# --- proxies ---------------------------------------------------------------------------
mkdir -p "$work/routes"
indent() { sed 's/^/    /' "$1"; }
cat > "$work/routes/bench.yaml" <<YAML
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: bench, namespace: default }
spec:
  hostnames: [bench.test]
  tls: { secretName: bench-tls }
  rules:
    - http: { backend: { address: "127.0.0.1:9101" } }
      websocket: { backend: { address: "127.0.0.1:9102" } }
---
apiVersion: v1
kind: Secret
metadata: { name: bench-tls, namespace: default }
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(indent "$work/cert.pem")
  tls.key: |
$(indent "$work/key.pem")
YAML
taskset -c 0 $bin/wsgate run --routes "$work/routes" --http-listen 127.0.0.1:9201 \
  --https-listen 127.0.0.1:9202 --admin-listen 127.0.0.1:9203 --access-log=false --log-level warn \
  >"$work/wsgate.log" 2>&1 & pids+=($!); wsgate_pid=$!

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 19500; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream http_backend { server 127.0.0.1:9101; keepalive 64; }
  upstream ws_backend { server 127.0.0.1:9102; }
  map \$http_upgrade \$pool { default http_backend; "~*websocket" ws_backend; }
  map \$http_upgrade \$conn_header { default ""; "~*websocket" upgrade; }
  server {
    listen 127.0.0.1:9302 ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass http://\$pool;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$conn_header;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_read_timeout 1d;
      proxy_send_timeout 1d;
    }
  }
}
NGINX
taskset -c 0 nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!); nginx_pid=$!

cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 9900
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1d
  option http-keep-alive
  option forwardfor
frontend fe
  bind 127.0.0.1:9402 ssl crt $work/haproxy.pem alpn http/1.1
  http-request set-header X-Forwarded-Proto https
  acl is_ws hdr(upgrade) -i websocket
  use_backend ws if is_ws
  default_backend web
backend web
  http-reuse always
  server s1 127.0.0.1:9101
backend ws
  server s1 127.0.0.1:9102
HAPROXY
taskset -c 0 haproxy -f "$work/haproxy.cfg" -db & pids+=($!); haproxy_pid=$!

cat > "$work/stunnel.conf" <<STUNNEL
foreground = yes
pid =
[https]
accept = 127.0.0.1:9502
connect = 127.0.0.1:9510
cert = $work/cert.pem
key = $work/key.pem
STUNNEL
cat > "$work/default.vcl" <<'VCL'
vcl 4.1;
backend web { .host = "127.0.0.1"; .port = "9101"; }
backend ws { .host = "127.0.0.1"; .port = "9102"; }
sub vcl_recv {
  if (req.http.upgrade ~ "(?i)websocket") {
    set req.backend_hint = ws;
    return (pipe);
  }
  set req.backend_hint = web;
  return (pass);
}
sub vcl_pipe {
  if (req.http.upgrade) {
    set bereq.http.upgrade = req.http.upgrade;
    set bereq.http.connection = req.http.connection;
  }
}
VCL
stunnel_bin=$(command -v stunnel4 || command -v stunnel)
taskset -c 0 "$stunnel_bin" "$work/stunnel.conf" >/dev/null 2>&1 & pids+=($!); stunnel_pid=$!
taskset -c 0 varnishd -F -a 127.0.0.1:9510 -f "$work/default.vcl" -n "$work/varnish" -s malloc,64m \
  -p pipe_timeout=86400 -p thread_pools=1 -p thread_pool_max=15000 >/dev/null 2>&1 & pids+=($!)

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
    "core0_busy_https": "proxy core busy % (HTTPS)", "core1_busy_https": "load core busy % (HTTPS)",
    "core0_busy_new_wss": "proxy core busy % (new WSS)", "core1_busy_new_wss": "load core busy % (new WSS)",
    "core0_busy_echo_100": "proxy core busy % (echo 100)", "core1_busy_echo_100": "load core busy % (echo 100)",
    "core0_busy_echo_1000": "proxy core busy % (echo 1000)", "core1_busy_echo_1000": "load core busy % (echo 1000)",
}
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
