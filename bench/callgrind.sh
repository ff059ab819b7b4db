#!/usr/bin/env bash
# Instructions per call (valgrind's callgrind), for A/B of small changes on a noisy machine:
# instruction counts do not depend on what else runs. Starts sessiond under callgrind on a fresh
# SQLite database (a user, its token, 1,000 sessions), warms it up, then counts the instructions
# of every thread of the server while examples/loadgen sends one RPC over one protocol, and
# divides by the calls the access log counted. One line per protocol.
#
#   bench/callgrind.sh                            # GetSession over grpc grpc-web connect rest
#   BENCH_BIN=/path/to/target/release bench/callgrind.sh get grpc rest
#
# Knobs (environment): BENCH_BIN (the binaries, default target/release), BENCH_DIR (databases,
# default /tmp/sessiond-callgrind), BENCH_PORT (7960), BENCH_SECS (measured seconds per
# protocol, 6), BENCH_CONCURRENCY (8), BENCH_OUT (the callgrind files, default $BENCH_DIR/out),
# BENCH_LOG_FORMAT (the server's --log-format: json, the default here, or text, the server's own).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-$PWD/target/release}
DIR=${BENCH_DIR:-/tmp/sessiond-callgrind}
PORT=${BENCH_PORT:-7960}
SECS=${BENCH_SECS:-6}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
OUT=${BENCH_OUT:-$DIR/out}
RPC=${1:-get}
shift || true
PROTOCOLS=${*:-grpc grpc-web connect rest}
export RUST_BACKTRACE=0 RUST_LOG=${RUST_LOG:-info}
mkdir -p "$DIR" "$OUT"

# The database, made by these binaries (bulkload is in examples/).
DB=$DIR/$(sha256sum "$BIN/sessiond" | cut -c1-8).db
if [[ ! -f $DB || ! -f $DB.token ]]; then
    rm -f "$DB" "$DB-wal" "$DB-shm"
    user=$("$BIN/sessiond" --database "sqlite:$DB" users add --login-name bench 2>/dev/null)
    "$BIN/sessiond" --database "sqlite:$DB" tokens add --user "$user" --permission session.read \
        --permission session.write --permission session.delete 2>/dev/null >"$DB.token"
    "$BIN/examples/bulkload" --database "sqlite:$DB" --user "$user" --seed bg --count 1000 >/dev/null
    "$BIN/sessiond" --database "sqlite:$DB" migrate 2>/dev/null
fi
TOKEN=$(cat "$DB.token")

SERVER=
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null || true' EXIT
LOG_FORMAT=${BENCH_LOG_FORMAT:-json}
calls() { grep -c -e '"message":"call"' -e 'access_log: call ' "$OUT/sessiond.log" || true; }
drive() {
    "$BIN/examples/loadgen" --server "s=127.0.0.1:$PORT" --arm "s:$1:$RPC" --token "$TOKEN" \
        --concurrency "$CONCURRENCY" --rounds 1 --round-secs "$2" --warmup-secs 0 --call-timeout-secs 60 >/dev/null 2>&1
}

for protocol in $PROTOCOLS; do
    work=$DIR/work.db
    rm -f "$work" "$work-wal" "$work-shm"
    cp "$DB" "$work"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$protocol.%p" \
        --log-file="$OUT/valgrind.log" \
        "$BIN/sessiond" --log-format "$LOG_FORMAT" --database "sqlite:$work" serve --listen "127.0.0.1:$PORT" \
        --runtime current-thread 2>"$OUT/sessiond.log" &
    SERVER=$!
    pid=$SERVER
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    drive "$protocol" 2 # warm-up: connections, caches, the limit's state
    sleep 1
    before=$(calls)
    callgrind_control -i on "$SERVER" >/dev/null 2>&1
    callgrind_control -z "$SERVER" >/dev/null 2>&1
    drive "$protocol" "$SECS"
    sleep 1
    callgrind_control -d "$SERVER" >/dev/null 2>&1
    n=$(($(calls) - before))
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
    # The first dump (the counts since the zeroing); the file without a number is the rest.
    file=$OUT/callgrind.$protocol.$pid.1
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    printf '%s %s: %d calls, %d instructions per call (%s)\n' "$RPC" "$protocol" "$n" $((ir / n)) "$file"
done
