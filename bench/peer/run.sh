#!/usr/bin/env bash
# Verdict against its peer, graphile-worker 0.17.3, on the same PostgreSQL and machine (docs/benchmarks.md,
# "Against the peer"). Installs graphile-worker with npm (Node 20) in a scratch folder, then alternates, RUNS
# times: the peer's drain of JOBS no-op jobs with one and with two processes (batching on: local queue 500,
# batched completion), and Verdict's drain of as many no-op steps (`verdict bench --only steps`). Then start
# latency: PROBES single jobs added RATE a second to an idle worker, peer and Verdict alternating. Prints the
# medians and Verdict's ratio to the peer's best.
#
#   bench/peer/run.sh                  # RUNS=3 JOBS=200000 PROBES=1000 RATE=100
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres VERDICT_BIN=target/release/verdict bench/peer/run.sh
#
# Both sides connect with PG_PARAMS (default sslmode=disable): node-postgres, the peer's client, uses no TLS
# unless told to, while sqlx (Verdict's) negotiates TLS whenever the server offers it (Debian's PostgreSQL
# does), which cost Verdict about a tenth of its throughput on loopback. The same settings for both.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
JOBS=${JOBS:-200000}
PROBES=${PROBES:-1000}
RATE=${RATE:-100}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
query=; [[ $PG_URL == *\?* ]] && query=${PG_URL#*\?}
PG_PARAMS=${PG_PARAMS:-${query:+$query&}sslmode=disable}
server=${PG_URL%%\?*}
server=${server%/*}
peer_db="$server/verdict_peer_graphile?$PG_PARAMS"
verdict_db="$server/verdict_peer_verdict?$PG_PARAMS"

command -v node >/dev/null || { echo "node (20) and npm are required"; exit 1; }
scratch=${PEER_SCRATCH:-$(mktemp -d /tmp/verdict-peer.XXXXXX)}
if [ ! -d "$scratch/node_modules/graphile-worker" ]; then
  echo "installing graphile-worker 0.17.3 in $scratch"
  npm install --prefix "$scratch" --no-audit --no-fund --silent graphile-worker@0.17.3
fi
export PEER_MODULES="$scratch/node_modules"

verdict=${VERDICT_BIN:-target/release/verdict}
if [ ! -x "$verdict" ]; then
  cargo build --release --bin verdict
fi
for db in verdict_peer_graphile verdict_peer_verdict; do
  psql "$PG_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    psql "$PG_URL" -qc "CREATE DATABASE $db"
done

verdict_bench() {
  VERDICT_DATABASE_URL="$verdict_db" VERDICT_LOG_LEVEL=warn "$verdict" bench --disputes "$JOBS" --steps "$JOBS" \
    --latency-probes "$PROBES" --latency-rate "$RATE" "$@"
}
number_before() { grep -Eo "[0-9.]+ $1" | head -1 | awk '{print $1}'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

# Verdict's steps need disputes (one step each): its first run bulk-loads them, before its timer starts.
: >"$scratch/peer1" ; : >"$scratch/peer2" ; : >"$scratch/verdict"
for run in $(seq 1 "$RUNS"); do
  line=$(node bench/peer/peer.mjs drain "$peer_db" "$JOBS" 1); echo "run $run peer, 1 process:  $line"
  echo "$line" | number_before "jobs/s" >>"$scratch/peer1"
  line=$(node bench/peer/peer.mjs drain "$peer_db" "$JOBS" 2); echo "run $run peer, 2 processes: $line"
  echo "$line" | number_before "jobs/s" >>"$scratch/peer2"
  line=$(verdict_bench --only steps | grep '^steps:'); echo "run $run Verdict: $line"
  echo "$line" | number_before "steps/s" >>"$scratch/verdict"
done

: >"$scratch/peer_p50" ; : >"$scratch/peer_p99" ; : >"$scratch/verdict_p50" ; : >"$scratch/verdict_p99"
for run in $(seq 1 "$RUNS"); do
  line=$(node bench/peer/peer.mjs latency "$peer_db" "$PROBES" "$RATE"); echo "run $run peer: $line"
  echo "$line" | grep -Eo 'p50 [0-9.]+' | awk '{print $2}' >>"$scratch/peer_p50"
  echo "$line" | grep -Eo 'p99 [0-9.]+' | awk '{print $2}' >>"$scratch/peer_p99"
  line=$(verdict_bench --only step-latency | grep '^step start latency'); echo "run $run Verdict: $line"
  echo "$line" | grep -Eo 'p50 [0-9.]+' | awk '{print $2}' >>"$scratch/verdict_p50"
  echo "$line" | grep -Eo 'p99 [0-9.]+' | awk '{print $2}' >>"$scratch/verdict_p99"
done

p1=$(median <"$scratch/peer1"); p2=$(median <"$scratch/peer2"); v=$(median <"$scratch/verdict")
best=$(printf '%s\n%s\n' "$p1" "$p2" | sort -g | tail -1)
echo
echo "== medians of $RUNS runs, $JOBS no-op jobs, $(nproc) cores =="
printf 'drain   graphile-worker 1 process %s jobs/s, 2 processes %s jobs/s; Verdict %s steps/s; ratio to the best %s\n' \
  "$p1" "$p2" "$v" "$(awk -v v="$v" -v b="$best" 'BEGIN {printf "%.2f", v / b}')"
printf 'latency graphile-worker p50 %s ms p99 %s ms; Verdict p50 %s ms p99 %s ms (%s jobs at %s/s)\n' \
  "$(median <"$scratch/peer_p50")" "$(median <"$scratch/peer_p99")" \
  "$(median <"$scratch/verdict_p50")" "$(median <"$scratch/verdict_p99")" "$PROBES" "$RATE"
