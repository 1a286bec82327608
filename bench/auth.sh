#!/usr/bin/env bash
# What verifying a JWT costs a new WebSocket, side by side in one run: one wsgate serves the
# same backend on two paths, `/ws` without auth and `/auth/ws` with `auth.jwt` (an ES256 key
# from a ConfigMap, the token in a query parameter). In alternating rounds, wsload opens and
# closes WSS connections (TCP + full TLS handshake + upgrade) on each path for SECS seconds;
# reported: connections per second and the proxy's CPU per connection, and their ratio.
#
#   bench/auth.sh                 # 3 rounds of 10 s
#   ROUNDS=1 SECS=4 bench/auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}

source bench/lib.sh
bench_setup
token=$($bin/examples/wsload token --jwks "$work/jwks.json")
python3 - "$work/routes/bench.yaml" "$work/jwks.json" <<'PY'
import json, sys
routes, jwks = sys.argv[1], open(sys.argv[2]).read()
text = open(routes).read()
rule = '    - websocket: { backend: { address: "127.0.0.1:9102" } }\n'
auth = ('    - pathPrefix: /auth\n'
        '      websocket: { backend: { address: "127.0.0.1:9102" } }\n'
        '      auth: { jwt: { jwks: { configMap: { name: bench-keys } }, tokenFrom: [ { query: access_token } ] } }\n')
text = text.replace("  rules:\n", "  rules:\n" + auth, 1)
text += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: bench-keys, namespace: default }\ndata:\n  jwks.json: " + json.dumps(jwks) + "\n"
open(routes, "w").write(text)
PY
grep -q bench-keys "$work/routes/bench.yaml"
taskset -c 1 $bin/examples/bench_backend --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null & pids+=($!)
taskset -c 0 "${wsgate_cmd[@]}" >"$work/wsgate.log" 2>&1 & pids+=($!); wsgate_pid=$!
for port in 9101 9102 9202; do wait_port $port; done
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' /proc/$wsgate_pid/stat; }
jget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

phase() {
  local name=$1 path=$2 t0 t1 out
  t0=$(ticks)
  out=$(taskset -c 1 $bin/examples/wsload connect --tls --connect 127.0.0.1:9202 --host bench.test \
    --path "$path" --concurrency 50 --seconds "$SECS")
  t1=$(ticks)
  printf '%s\t%s\t%s\n' "$name" "$(jget "$out" conns_per_sec)" \
    "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$(jget "$out" connections)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')" \
    | tee -a "$work/auth.tsv"
}

# A token that does not verify must be refused, or the figures measure nothing.
if taskset -c 1 $bin/examples/wsload connect --tls --connect 127.0.0.1:9202 --host bench.test \
  --path "/auth/ws?access_token=bad" --concurrency 1 --seconds 1 2>/dev/null | grep -q '"connections":[1-9]'; then
  echo "a bad token opened a socket: the auth rule is not in force" >&2; exit 1
fi
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    phase none /ws; phase es256 "/auth/ws?access_token=$token"
  else
    phase es256 "/auth/ws?access_token=$token"; phase none /ws
  fi
done
python3 - "$work/auth.tsv" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate, cpu = line.split("\t")
    rows.setdefault(name, ([], []))
    rows[name][0].append(float(rate)); rows[name][1].append(float(cpu))
med = {n: (statistics.median(r), statistics.median(c)) for n, (r, c) in rows.items()}
print("| path | new WSS/s | CPU us per new WSS |")
print("|---|---|---|")
for n in ("none", "es256"):
    print(f"| {n} | {med[n][0]:,.0f} | {med[n][1]:.1f} |")
print(f"| es256/none | {med['es256'][0] / med['none'][0]:.3f} | {med['es256'][1] / med['none'][1]:.3f} |")
PY
