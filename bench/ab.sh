#!/usr/bin/env bash
# HTTPS keep-alive A/B of two wsgate builds in one run: the current tree and OTHER (a binary),
# serving the same route and certificate, each alone on CPU 0 in alternating rounds; wrk and
# the backend on CPU 1. Reported per build: requests per second and the process's user and
# kernel CPU per request (medians), and the ratios current/other.
#
#   OTHER=/tmp/old/target/release/wsgate bench/ab.sh
#   ROUNDS=6 SECS=8 OTHER=... bench/ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-8}
OTHER=${OTHER:?OTHER=path of the other wsgate binary}

source bench/lib.sh
bench_setup
taskset -c 1 $bin/examples/bench_backend --listen 127.0.0.1:9101 --listen 127.0.0.1:9102 >/dev/null & pids+=($!)
taskset -c 0 "${wsgate_cmd[@]}" >"$work/current.log" 2>&1 & pids+=($!); current=$!
other_cmd=("${wsgate_cmd[@]}")
other_cmd[0]=$OTHER
# The same flags on other ports.
for i in "${!other_cmd[@]}"; do
  other_cmd[$i]=$(echo "${other_cmd[$i]}" | sed 's/920\([0-9]\)/921\1/g')
done
taskset -c 0 "${other_cmd[@]}" >"$work/other.log" 2>&1 & pids+=($!); other=$!
for port in 9101 9202 9212; do wait_port $port; done
hz=$(getconf CLK_TCK)
split() { awk '{print $14, $15}' /proc/$1/stat; }
phase() {
  local name=$1 pid=$2 port=$3 u0 k0 u1 k1 out reqs
  read -r u0 k0 < <(split "$pid")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" -H 'Host: bench.test' "https://127.0.0.1:$port/")
  read -r u1 k1 < <(split "$pid")
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  printf '%s\t%s\t%s\t%s\n' "$name" "$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
    "$(awk -v t=$((u1 - u0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')" \
    "$(awk -v t=$((k1 - k0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')" | tee -a "$work/ab.tsv"
}
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    phase current "$current" 9202; phase other "$other" 9212
  else
    phase other "$other" 9212; phase current "$current" 9202
  fi
done
python3 - "$work/ab.tsv" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, user, sys_ = line.split("\t")
    rows.setdefault(name, []).append((float(rps), float(user), float(sys_)))
med = {n: [statistics.median(c) for c in zip(*v)] for n, v in rows.items()}
print("| build | req/s | user us/req | kernel us/req |")
print("|---|---|---|---|")
for n in ("current", "other"):
    print(f"| {n} | {med[n][0]:,.0f} | {med[n][1]:.2f} | {med[n][2]:.2f} |")
print("| current/other | " + " | ".join(f"{a / b:.3f}" for a, b in zip(med["current"], med["other"])) + " |")
PY
