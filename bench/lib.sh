# Shared by bench/run.sh and bench/instructions.sh: the peers, the build, a work folder with
# the certificate and every proxy's configuration for the same job, and the command line of each
# proxy (without what pins or instruments it). Source it from the repository root, then call
# bench_setup.

wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

bench_setup() {
# (Not indented: the heredocs below must keep their columns.)
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
  # A few seconds to exit cleanly, then whatever is left is killed.
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -f "varnishd.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- certificate -----------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"

# --- configurations --------------------------------------------------------------------
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

# Each proxy's command line; the HTTPS ports are 9202 (wsgate), 9302 (nginx), 9402 (HAProxy),
# 9502 (stunnel, in front of Varnish on 9510).
wsgate_cmd=("$bin/wsgate" run --routes "$work/routes" --http-listen 127.0.0.1:9201
  --https-listen 127.0.0.1:9202 --admin-listen 127.0.0.1:9203 --access-log=false --log-level warn
  --drain-delay 0s)
nginx_cmd=(nginx -c "$work/nginx.conf" -g 'daemon off;')
haproxy_cmd=(haproxy -f "$work/haproxy.cfg" -db)
stunnel_cmd=("$(command -v stunnel4 || command -v stunnel)" "$work/stunnel.conf")
varnish_cmd=(varnishd -F -a 127.0.0.1:9510 -f "$work/default.vcl" -n "$work/varnish" -s malloc,64m
  -p pipe_timeout=86400 -p thread_pools=1 -p thread_pool_max=15000)
}
