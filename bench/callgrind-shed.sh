#!/usr/bin/env bash
# Instructions per shed call (issue 12, deliverable 5): counts a served gRPC GetSession with
# bench/callgrind.sh, then runs the server under callgrind with `--max-in-flight 1` while
# examples/loadgen sends GetSession over gRPC at concurrency 64 on one connection, so that almost
# every call is refused with RESOURCE_EXHAUSTED; the served calls are priced at the first count
# and the rest of the instructions divided among the refusals the generator counted.
#
#   bench/callgrind-shed.sh
#   BENCH_BIN=/path/to/target/release bench/callgrind-shed.sh
#
# Knobs (environment): BENCH_BIN (default target/release), BENCH_DIR (default
# /tmp/sessiond-callgrind), BENCH_PORT (7970), BENCH_SECS (6), BENCH_OUT ($BENCH_DIR/shed).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-$PWD/target/release}
DIR=${BENCH_DIR:-/tmp/sessiond-callgrind}
PORT=${BENCH_PORT:-7970}
SECS=${BENCH_SECS:-6}
OUT=${BENCH_OUT:-$DIR/shed}
export RUST_BACKTRACE=0 RUST_LOG=${RUST_LOG:-info}
mkdir -p "$OUT"

served=$(BENCH_BIN=$BIN BENCH_DIR=$DIR BENCH_OUT=$OUT/served bench/callgrind.sh get grpc | tail -1)
echo "$served"
served_ir=$(sed -E 's/.* ([0-9]+) instructions per call.*/\1/' <<<"$served")
# The database bench/callgrind.sh made for these binaries.
DB=$DIR/$(sha256sum "$BIN/sessiond" | cut -c1-8).db
TOKEN=$(cat "$DB.token")
work=$DIR/shed.db
rm -f "$work" "$work-wal" "$work-shm"
cp "$DB" "$work"

SERVER=
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null || true' EXIT
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.shed.%p" \
    --log-file="$OUT/valgrind.log" \
    "$BIN/sessiond" --log-format json --database "sqlite:$work" serve --listen "127.0.0.1:$PORT" \
    --runtime current-thread --max-in-flight 1 2>"$OUT/sessiond.log" &
SERVER=$!
pid=$SERVER
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
drive() {
    "$BIN/examples/loadgen" --server "s=127.0.0.1:$PORT" --arm "s:grpc:get" --token "$TOKEN" \
        --concurrency 64 --rounds 1 --round-secs "$1" --warmup-secs 0 --call-timeout-secs 60 2>&1 || true
}
drive 2 >/dev/null # warm-up
sleep 1
callgrind_control -i on "$SERVER" >/dev/null 2>&1
callgrind_control -z "$SERVER" >/dev/null 2>&1
drive "$SECS" >"$OUT/loadgen.txt"
sleep 1
callgrind_control -d "$SERVER" >/dev/null 2>&1
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
SERVER=
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$OUT/callgrind.shed.$pid.1")
line=$(grep -m1 '^round' "$OUT/loadgen.txt")
rate=$(sed -E 's/.* ([0-9]+) calls\/s.*/\1/' <<<"$line")
shed=$(sed -E 's/.*failed ([0-9]+).*/\1/' <<<"$line")
ok=$((rate * SECS))
per_shed=$(((ir - ok * served_ir) / shed))
printf 'shed: %d served, %d shed, %d instructions per shed call, %d per served call (%s)\n' \
    "$ok" "$shed" "$per_shed" "$served_ir" \
    "$(awk -v a="$per_shed" -v b="$served_ir" 'BEGIN { printf "shed/served %.2f", a / b }')"
