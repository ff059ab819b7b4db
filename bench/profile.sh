#!/usr/bin/env bash
# Where sessiond's CPU goes for one RPC: drives it over gRPC (closed loop, concurrency 64) from
# core 1, and meanwhile samples the server on core 0 with perf (DWARF call graphs) and counts its
# system calls and I/O per call from /proc. Needs the template database bench/run.sh builds.
#
#   bench/profile.sh get                      # or: delete, create
#   BENCH_PROTOCOL=rest bench/profile.sh get  # over grpc-web, connect or rest instead of grpc
set -euo pipefail

cd "$(dirname "$0")/.."
RPC=${1:-get}
BIN=$PWD/target/release
DIR=${BENCH_DIR:-/tmp/sessiond-bench}
POOL=${BENCH_POOL:-400000}
RUNTIME=${BENCH_RUNTIME:-current-thread}
PROTOCOL=${BENCH_PROTOCOL:-grpc}
OUT=${BENCH_OUT:-$PWD/bench/results/profile-$RPC-${BENCH_PROTOCOL:-grpc}-$(date -u +%Y%m%dT%H%M%SZ)}
export RUST_BACKTRACE=0
PORT=${BENCH_PORT:-7950}
SCHEMA=$(cat migrations/sqlite/*.sql examples/bench_common/mod.rs | sha256sum | cut -c1-8)
[[ -f $DIR/small-$SCHEMA-$POOL.db ]] || { echo "run bench/run.sh first (it builds $DIR/small-$SCHEMA-$POOL.db)" >&2; exit 1; }
mkdir -p "$OUT"
TOKEN=$(cat "$DIR/token-$SCHEMA-$POOL")

rm -f "$DIR/profile.db" "$DIR/profile.db-wal" "$DIR/profile.db-shm"
cp "$DIR/small-$SCHEMA-$POOL.db" "$DIR/profile.db"
taskset -c 0 "$BIN/sessiond" --log-format json --database "sqlite:$DIR/profile.db" serve \
    --listen 127.0.0.1:$PORT --runtime "$RUNTIME" >"$OUT/sessiond.log" 2>&1 &
SERVER=$!
LOADGEN=
trap 'kill $SERVER ${LOADGEN:-} 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

taskset -c 1 "$BIN/examples/loadgen" --server "s=127.0.0.1:$PORT,pid=$SERVER" --arm "s:$PROTOCOL:$RPC" \
    --token "$TOKEN" --delete-count "$POOL" --rounds 1 --round-secs 10 --warmup-secs 0.5 >"$OUT/loadgen.md" 2>&1 &
LOADGEN=$!
sleep 2

calls() { grep -c '"message":"call"' "$OUT/sessiond.log" || true; }
c0=$(calls)
cp "/proc/$SERVER/io" "$OUT/io.before"
cpu0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
ctx0=$(awk '/ctxt_switches/ {s += $2} END {print s}' /proc/"$SERVER"/task/*/status)
perf record -F 997 --call-graph dwarf,32768 -p "$SERVER" -o "$OUT/perf.data" -- sleep 4 2>"$OUT/perf-record.txt"
cp "/proc/$SERVER/io" "$OUT/io.after"
cpu1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
ctx1=$(awk '/ctxt_switches/ {s += $2} END {print s}' /proc/"$SERVER"/task/*/status)
c1=$(calls)
threads=$(find "/proc/$SERVER/task" -mindepth 1 -maxdepth 1 | wc -l)
wait "$LOADGEN" || true

n=$((c1 - c0))
{
    echo "# profile of $RPC over $PROTOCOL ($RUNTIME runtime, SQLite, $POOL + 1000 sessions)"
    echo
    echo "calls while sampling: $n (perf slows the server: use the ratios, not the rate)"
    echo "server CPU per call: $(((cpu1 - cpu0) * 10000 / n)) us; threads: $threads; context switches per call: $(awk -v a="$ctx0" -v b="$ctx1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')"
    echo
    echo "per call, from /proc/PID/io:"
    paste "$OUT/io.before" "$OUT/io.after" | awk -v n="$n" '{ printf "  %-22s %10.1f\n", $1, ($4 - $2) / n }'
    echo
    echo "CPU samples by thread:"
    perf report -i "$OUT/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | grep -v '^#'
    echo
    echo "inclusive share of selected frames:"
    perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep '%' | grep -v '^#' |
        grep -E ' (sessiond::transport::Edge::(handle|invoke)|sessiond::domain::user::Users::authenticate|sessiond::store::sqlite::(writer_loop|in_savepoint|SqliteStore::read)|tokio::runtime::blocking::pool::(Spawner::spawn_blocking|Inner::run)$|sqlite3_step|sqlite3WalCheckpoint|pagerWalFrames|__GI_fsync|<std::sys::sync::mutex::futex::Mutex>::lock_contended|<std::sys::sync::condvar::futex::Condvar>::wait_optional_timeout|finish_task_switch|tracing_core::event::Event::dispatch|h2::proto::connection::Connection<T,P,B>::poll$|<tonic::service::router::RoutesFuture|sessiond::store::codec::decode_state|_int_malloc)' |
        awk '!seen[$NF]++' | head -30
} | tee "$OUT/profile.txt"
echo "perf data: $OUT/perf.data (perf report -i ... --children)" >&2
