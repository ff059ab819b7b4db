#!/usr/bin/env bash
# DeleteSession's tail on one server, for quick A/B of builds: one sessiond on a fresh copy of
# bench/run.sh's template database (run that once first), pinned to core 0, driven from core 1
# by examples/loadgen for SECS seconds without pauses (so that every WAL restart of the run falls
# inside it), closed loop or open loop. Prints loadgen's row and the WAL file's peak size.
#
#   bench/delete_tail.sh target/release 8                   # closed loop, c=64
#   BENCH_RATE=9000 bench/delete_tail.sh /tmp/base-bin 8     # open loop at 9,000 calls/s
#
# Knobs (environment): BENCH_DIR (where bench/run.sh left its template, /tmp/sessiond-bench),
# BENCH_POOL (its pool, 400000), BENCH_RATE (open loop calls/s; unset: closed loop),
# BENCH_PROTOCOL (grpc, grpc-web, connect, rest), BENCH_SERVE_ARGS (e.g. "--sync full"),
# BENCH_PORT (7990).
set -euo pipefail

BIN=${1:?usage: bench/delete_tail.sh BIN_DIR SECS}
SECS=${2:-8}
DIR=${BENCH_DIR:-/tmp/sessiond-bench}
POOL=${BENCH_POOL:-400000}
PORT=${BENCH_PORT:-7990}
template=$(ls "$DIR"/small-*-"$POOL".db 2>/dev/null | head -1)
[[ -n $template ]] || { echo "no template in $DIR: run bench/run.sh matrix once" >&2; exit 1; }
token=$(cat "$DIR"/token-*-"$POOL" | head -1)
work=$DIR/tail.db
rm -f "$work" "$work-wal" "$work-shm"
cp "$template" "$work"

# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of options
taskset -c 0 "$BIN/sessiond" --log-format json --database "sqlite:$work" serve --listen "127.0.0.1:$PORT" \
    --metrics-listen none --runtime current-thread ${BENCH_SERVE_ARGS:-} >"$DIR/tail.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# The WAL's peak, sampled every 50 ms while the server runs.
(
    peak=0
    while kill -0 "$server" 2>/dev/null; do
        size=$(stat -c %s "$work-wal" 2>/dev/null || echo 0)
        if ((size > peak)); then peak=$size; echo "$peak" >"$DIR/tail.walpeak"; fi
        sleep 0.05
    done
) &
sampler=$!

rate=()
[[ -n ${BENCH_RATE:-} ]] && rate=(--rate "$BENCH_RATE")
taskset -c 1 "$BIN/examples/loadgen" --token "$token" --delete-count "$POOL" --concurrency 64 --rounds 1 \
    --round-secs "$SECS" --server "s=127.0.0.1:$PORT,pid=$server" --arm "s:${BENCH_PROTOCOL:-grpc}:delete" \
    "${rate[@]}" 2>/dev/null | grep '^| s:'
kill "$server"
wait "$server" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
echo "WAL peak: $(($(cat "$DIR/tail.walpeak" 2>/dev/null || echo 0) / 1048576)) MiB"
