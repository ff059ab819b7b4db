#!/usr/bin/env bash
# The whole benchmark of BENCHMARKS.md, end to end: build, prepare databases, start sessiond and
# the ceiling pinned to core 0, drive them from core 1 with examples/loadgen (arms alternated
# round by round), cross-check with h2load, and leave every table and JSON file in $OUT.
#
#   bench/run.sh                  # everything (first run also bulk-loads 1M sessions, ~2 min)
#   bench/run.sh matrix sync      # only some: matrix runtime sync million latency h2load logging shapes overload overload-h2load
#   BENCH_BASE=... bench/run.sh postgres-ab   # the same on PostgreSQL (a database for each side)
#   bench/run.sh postgres-scale                # two sessiond processes on one PostgreSQL database against one
#   BENCH_BASE=/path/to/baseline/target/release bench/run.sh ab   # same-run A/B against a baseline build
#
# Knobs (environment): BENCH_DIR (databases, default /tmp/sessiond-bench), BENCH_POOL (sessions
# each server may delete, default 400000), BENCH_ROUNDS (5), BENCH_ROUND_SECS (2),
# BENCH_CONCURRENCY (64), BENCH_RUNTIME (current-thread), BENCH_SERVER_CPU (0), BENCH_LOAD_CPU (1),
# BENCH_PORT (7800: ports PORT .. PORT+54 on 127.0.0.1), BENCH_MILLION (1000000), BENCH_OUT,
# BENCH_OVERLOAD_SECS (60: each open-loop step of the overload scenario), BENCH_OVERLOAD_FACTORS
# (overload-h2load's offered rates as multiples of the peak, "0.5 1.5 2"), BENCH_OVERLOAD_PROBE_SECS
# (10: each step of overload-h2load's search for the open-loop peak), BENCH_SERVE_ARGS (serve
# options overload-h2load adds, to try settings), BENCH_OVERLOAD_STAGGER (set: overload-h2load opens
# its connections two a millisecond, so that their 10 ms bursts interleave), BENCH_OVERLOAD_PEAK
# (calls/s: overload-h2load's peak, given rather than searched for), BENCH_BIN (the binaries,
# default target/release),
# BENCH_AB_RPCS (the ab scenario's RPCs, default "delete get create"),
# BENCH_POSTGRES (server URL for the postgres scenario, default the local test server; it creates
# and drops the database `sessiond_bench` there), BENCH_PG_POOL (sessions to delete there, 150000),
# BENCH_PG_SETTINGS (e.g. "commit_delay=200 commit_siblings=2": set on that database for its sessions).
# Every loop is bounded by rounds x seconds; every server listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BENCH_BIN:-$ROOT/target/release}
DIR=${BENCH_DIR:-/tmp/sessiond-bench}
POOL=${BENCH_POOL:-400000}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_SECS=${BENCH_ROUND_SECS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
RUNTIME=${BENCH_RUNTIME:-current-thread}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
MILLION=${BENCH_MILLION:-1000000}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
SCENARIOS=${*:-matrix postgres runtime sync million latency h2load logging shapes overload}
PG_BASE=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
PG_POOL=${BENCH_PG_POOL:-150000}
export RUST_BACKTRACE=0 RUST_LOG=${RUST_LOG:-info}

mkdir -p "$DIR" "$OUT"
PIDS=()
PG_PINNED=
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    if [[ -n $PG_PINNED ]]; then pin_postgres "0-$(($(nproc) - 1))"; PG_PINNED=; fi
}

# pin_postgres CPUS: every PostgreSQL process (and the backends the postmaster forks later).
pin_postgres() {
    for pid in $(pgrep -x postgres); do taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*" >&2; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# start_sessiond PORT DB [serve options...]: the pid goes to $LAST_PID (no subshell, so that
# cleanup knows it).
start_sessiond() {
    local port=$1 db=$2
    shift 2
    [[ $db == *://* ]] || db="sqlite:$db"
    # Each server's /metrics beside it (PORT+100; `--metrics-listen none` in the options turns it off).
    SESSIOND_METRICS_LISTEN=127.0.0.1:$((port + 100)) \
        taskset -c "$SERVER_CPU" "$BIN/sessiond" --log-format json --database "$db" serve \
        --listen "127.0.0.1:$port" "$@" >"$OUT/sessiond-$port.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port"
}

# start_ceiling PORT [options...]: the pid goes to $LAST_PID.
start_ceiling() {
    local port=$1
    shift
    taskset -c "$SERVER_CPU" "$BIN/examples/ceiling" --listen "127.0.0.1:$port" "$@" >"$OUT/ceiling-$port.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port"
}

# loadgen NAME [loadgen options...]: runs the generator on its core; table to $OUT/NAME.md.
loadgen() {
    local name=$1
    shift
    taskset -c "$LOAD_CPU" "$BIN/examples/loadgen" --token "${LOADGEN_TOKEN:-$TOKEN}" --delete-count "${LOADGEN_POOL:-$POOL}" \
        --concurrency "$CONCURRENCY" --rounds "$ROUNDS" --round-secs "$ROUND_SECS" \
        --json "$OUT/$name.json" "$@" 2> >(tee "$OUT/$name.progress" >&2) | tee "$OUT/$name.md"
}

# A fresh working copy of a template database (deletes consume its pool).
copy_db() {
    rm -f "$2" "$2-wal" "$2-shm"
    cp "$1" "$2"
    if [[ -f $1-wal ]]; then cp "$1-wal" "$2-wal"; fi
}

# Folds any WAL left behind into the database file (`migrate` opens the store and closes it; the
# last connection to close checkpoints and removes the WAL), so that templates are one file.
checkpoint_db() {
    "$BIN/sessiond" --database "sqlite:$1" migrate 2>/dev/null
    if [[ -f $1-wal ]]; then
        echo "the WAL of $1 was not folded in" >&2
        exit 1
    fi
}

log "build"
cargo build --release --bins --examples

# PostgreSQL requires a secrets key file: one key for every process and command of the run (it
# seals nothing here; SQLite databases would make their own beside them).
if [[ ! -f $DIR/bench.secrets-key ]]; then (umask 077 && "$BIN/sessiond" secrets generate-key >"$DIR/bench.secrets-key"); fi
export SESSIOND_SECRETS_KEY_FILE=$DIR/bench.secrets-key

log "machine"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
    echo "memory: $(free -m | awk '/Mem:/ {print $2 " MiB"}')"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
    echo "disk of $DIR: $(df -h "$DIR" | awk 'NR==2 {print $1 " " $2}')"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "server core $SERVER_CPU, generator core $LOAD_CPU, runtime $RUNTIME, concurrency $CONCURRENCY"
} | tee "$OUT/machine.txt"

# Template databases, built once per pool size: the bench user, its token, 1,000 sessions to
# read ("bg" 0..999) and $POOL sessions to delete ("del"); the large one adds "bg" up to 1M.
# Keyed by the schema and the id scheme too: a template built for another schema is useless.
SCHEMA=$(cat migrations/sqlite/*.sql examples/bench_common/mod.rs | sha256sum | cut -c1-8)
SMALL=$DIR/small-$SCHEMA-$POOL.db
LARGE=$DIR/large-$SCHEMA-$POOL-$MILLION.db
if [[ ! -f $SMALL || ! -f $DIR/token-$SCHEMA-$POOL ]]; then
    log "template database: 1,000 + $POOL sessions"
    rm -f "$SMALL" "$SMALL-wal" "$SMALL-shm" "$LARGE" "$LARGE-wal" "$LARGE-shm"
    USER_ID=$("$BIN/sessiond" --database "sqlite:$SMALL" users add --login-name bench 2>/dev/null)
    "$BIN/sessiond" --database "sqlite:$SMALL" tokens add --user "$USER_ID" \
        --permission session.read --permission session.write --permission session.delete 2>/dev/null >"$DIR/token-$SCHEMA-$POOL"
    "$BIN/examples/bulkload" --database "sqlite:$SMALL" --user "$USER_ID" --seed bg --count 1000
    "$BIN/examples/bulkload" --database "sqlite:$SMALL" --user "$USER_ID" --seed del --count "$POOL"
    checkpoint_db "$SMALL"
    echo "$USER_ID" >"$DIR/user-$SCHEMA-$POOL"
fi
TOKEN=$(cat "$DIR/token-$SCHEMA-$POOL")
USER_ID=$(cat "$DIR/user-$SCHEMA-$POOL")
if [[ $SCENARIOS == *million* && ! -f $LARGE ]]; then
    log "template database: $MILLION + $POOL sessions"
    copy_db "$SMALL" "$LARGE.tmp"
    "$BIN/examples/bulkload" --database "sqlite:$LARGE.tmp" --user "$USER_ID" --seed bg --start 1000 \
        --count $((MILLION - 1000)) | tee "$OUT/bulkload-million.txt"
    checkpoint_db "$LARGE.tmp"
    mv "$LARGE.tmp" "$LARGE"
fi

# prepare_pg URL SEED...: a fresh benchmark database at URL (dropped first) with the benchmark
# user and token ($PG_USER, $PG_TOKEN), 1,000 sessions to read and $PG_POOL to delete per seed,
# vacuumed and checkpointed, BENCH_PG_SETTINGS applied; its description to $OUT/postgres.txt.
prepare_pg() {
    local url=$1 name=${1##*/} seed
    shift
    psql "$PG_BASE" -q -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    PG_USER=$("$BIN/sessiond" --database "$url" users add --login-name bench 2>/dev/null)
    PG_TOKEN=$("$BIN/sessiond" --database "$url" tokens add --user "$PG_USER" \
        --permission session.read --permission session.write --permission session.delete 2>/dev/null)
    "$BIN/examples/bulkload" --database "$url" --user "$PG_USER" --seed bg --count 1000
    for seed in "$@"; do
        "$BIN/examples/bulkload" --database "$url" --user "$PG_USER" --seed "$seed" --count "$PG_POOL" | tee -a "$OUT/bulkload-$name.txt"
    done
    psql "$url" -q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
    for setting in ${BENCH_PG_SETTINGS:-}; do
        psql "$PG_BASE" -q -c "ALTER DATABASE $name SET ${setting%%=*} = '${setting#*=}'"
    done
    echo "postgres: $(psql "$url" -Atc 'SHOW server_version'), synchronous_commit=$(psql "$url" -Atc 'SHOW synchronous_commit'), shared_buffers=$(psql "$url" -Atc 'SHOW shared_buffers'), commit_delay=$(psql "$url" -Atc 'SHOW commit_delay'), commit_siblings=$(psql "$url" -Atc 'SHOW commit_siblings')" | tee "$OUT/postgres.txt"
}

PORT=${BENCH_PORT:-7800}
GRPC_PORT=$((PORT + 1)) CEIL_PORT=$PORT
for scenario in $SCENARIOS; do
    case $scenario in
    matrix)
        # protocol x RPC on SQLite (synchronous=NORMAL), each RPC against the ceiling.
        copy_db "$SMALL" "$DIR/work.db"
        start_sessiond $GRPC_PORT "$DIR/work.db" --runtime "$RUNTIME"; S=$LAST_PID
        start_ceiling $CEIL_PORT --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in ${BENCH_AB_RPCS:-delete get create}; do
            log "matrix: $rpc"
            loadgen "matrix-$rpc" --title "$rpc: protocols vs ceiling (SQLite, sync normal, $RUNTIME)" \
                --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" --server "ceiling=127.0.0.1:$CEIL_PORT,pid=$C,any-id" \
                --arm "ceiling:grpc:$rpc" --arm "sessiond:grpc:$rpc" --arm "sessiond:grpc-web:$rpc" \
                --arm "sessiond:connect:$rpc" --arm "sessiond:rest:$rpc"
        done
        log "matrix: HTTP/1.1 (one connection per worker)"
        loadgen "matrix-h1" --title "HTTP/1.1 arms (64 connections) vs h2c gRPC" \
            --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" --server "ceiling=127.0.0.1:$CEIL_PORT,pid=$C,any-id" \
            --arm "ceiling:grpc:get" --arm "sessiond:grpc:get" --arm "sessiond:grpc-web@h1:get" \
            --arm "sessiond:connect@h1:get" --arm "sessiond:rest@h1:get"
        cleanup
        ;;
    postgres)
        # protocol x RPC on PostgreSQL: a fresh database loaded like the SQLite template, the
        # PostgreSQL server's processes pinned to the server core beside sessiond for the run.
        command -v psql >/dev/null || { echo "psql missing" >&2; exit 1; }
        PG_URL=${PG_BASE%/*}/sessiond_bench
        log "postgres: database sessiond_bench, 1,000 + $PG_POOL sessions"
        prepare_pg "$PG_URL" del
        pin_postgres "$SERVER_CPU"; PG_PINNED=1
        start_sessiond $((PORT + 51)) "$PG_URL" --runtime "$RUNTIME"; S=$LAST_PID
        start_ceiling $((PORT + 52)) --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in ${BENCH_AB_RPCS:-delete get create}; do
            log "postgres: $rpc"
            LOADGEN_TOKEN=$PG_TOKEN LOADGEN_POOL=$PG_POOL loadgen "postgres-$rpc" \
                --title "$rpc: protocols vs ceiling (PostgreSQL, $RUNTIME; PostgreSQL on the server core)" \
                --server "pg=127.0.0.1:$((PORT + 51)),pid=$S" --server "ceiling=127.0.0.1:$((PORT + 52)),pid=$C,any-id" \
                --arm "ceiling:grpc:$rpc" --arm "pg:grpc:$rpc" --arm "pg:grpc-web:$rpc" \
                --arm "pg:connect:$rpc" --arm "pg:rest:$rpc"
        done
        cleanup
        psql "$PG_BASE" -q -c 'DROP DATABASE IF EXISTS sessiond_bench'
        ;;
    postgres-scale)
        # Two sessiond processes on one database against one: the one-process rate (c=64), then
        # two processes each driven by a generator of its own at once (c=32 each, distinct pools
        # to delete), summed. PostgreSQL and every sessiond share the server core; both
        # generators share the load core.
        command -v psql >/dev/null || { echo "psql missing" >&2; exit 1; }
        PG_URL=${PG_BASE%/*}/sessiond_bench
        log "postgres-scale: database sessiond_bench, 1,000 + 3 x $PG_POOL sessions"
        prepare_pg "$PG_URL" del one two
        echo "| RPC | one process, calls/s | two processes, calls/s | two / one |" >"$OUT/postgres-scale.md"
        echo "|---|---:|---:|---:|" >>"$OUT/postgres-scale.md"
        pin_postgres "$SERVER_CPU"; PG_PINNED=1
        start_sessiond $((PORT + 51)) "$PG_URL" --runtime "$RUNTIME"; S1=$LAST_PID
        start_sessiond $((PORT + 53)) "$PG_URL" --runtime "$RUNTIME"; S2=$LAST_PID
        for rpc in ${BENCH_AB_RPCS:-delete get create}; do
            log "postgres-scale: $rpc, one process"
            LOADGEN_TOKEN=$PG_TOKEN LOADGEN_POOL=$PG_POOL loadgen "postgres-scale-1-$rpc" --delete-seed del \
                --title "$rpc: one process (PostgreSQL on the server core)" \
                --server "one=127.0.0.1:$((PORT + 51)),pid=$S1" --arm "one:grpc:$rpc"
            log "postgres-scale: $rpc, two processes"
            LOADGEN_TOKEN=$PG_TOKEN LOADGEN_POOL=$PG_POOL CONCURRENCY=$((CONCURRENCY / 2)) loadgen "postgres-scale-2a-$rpc" \
                --delete-seed one --title "$rpc: process A of two" \
                --server "a=127.0.0.1:$((PORT + 51)),pid=$S1" --arm "a:grpc:$rpc" &
            A=$!
            LOADGEN_TOKEN=$PG_TOKEN LOADGEN_POOL=$PG_POOL CONCURRENCY=$((CONCURRENCY / 2)) loadgen "postgres-scale-2b-$rpc" \
                --delete-seed two --title "$rpc: process B of two" \
                --server "b=127.0.0.1:$((PORT + 53)),pid=$S2" --arm "b:grpc:$rpc"
            wait "$A"
            one=$(jq '.arms[0].rate | round' "$OUT/postgres-scale-1-$rpc.json")
            a=$(jq '.arms[0].rate | round' "$OUT/postgres-scale-2a-$rpc.json")
            b=$(jq '.arms[0].rate | round' "$OUT/postgres-scale-2b-$rpc.json")
            echo "| $rpc | $one | $a + $b | $(jq -n "($a + $b) / $one * 1000 | round / 1000") |" >>"$OUT/postgres-scale.md"
        done
        cleanup
        psql "$PG_BASE" -q -c 'DROP DATABASE IF EXISTS sessiond_bench'
        ;;
    postgres-ab)
        # Same-run A/B on PostgreSQL: this build ("new") and BENCH_BASE's ("base"), each on a
        # database of its own on the one PostgreSQL server (deletes consume each one's pool),
        # both servers and PostgreSQL pinned to the server core, arms alternated.
        [[ -n ${BENCH_BASE:-} ]] || { echo "the postgres-ab scenario needs BENCH_BASE=<baseline target/release>" >&2; exit 2; }
        command -v psql >/dev/null || { echo "psql missing" >&2; exit 1; }
        # One user and one token for both: made on the base side, copied to the new side.
        for side in base new; do
            SIDE_BIN=$BIN; [[ $side == base ]] && SIDE_BIN=$BENCH_BASE
            SIDE_URL=${PG_BASE%/*}/sessiond_bench_$side
            log "postgres-ab: database sessiond_bench_$side, 1,000 + $PG_POOL sessions"
            psql "$PG_BASE" -q -c "DROP DATABASE IF EXISTS sessiond_bench_$side" -c "CREATE DATABASE sessiond_bench_$side"
            if [[ $side == base ]]; then
                AB_USER=$("$SIDE_BIN/sessiond" --database "$SIDE_URL" users add --login-name bench 2>/dev/null)
                LOADGEN_TOKEN=$("$SIDE_BIN/sessiond" --database "$SIDE_URL" tokens add --user "$AB_USER" \
                    --permission session.read --permission session.write --permission session.delete 2>/dev/null)
            else
                "$SIDE_BIN/sessiond" --database "$SIDE_URL" migrate 2>/dev/null
                for table in users api_tokens; do
                    psql "${PG_BASE%/*}/sessiond_bench_base" -q -c "COPY $table TO STDOUT" | psql "$SIDE_URL" -q -c "COPY $table FROM STDIN"
                done
            fi
            "$SIDE_BIN/examples/bulkload" --database "$SIDE_URL" --user "$AB_USER" --seed bg --count 1000
            "$SIDE_BIN/examples/bulkload" --database "$SIDE_URL" --user "$AB_USER" --seed del --count "$PG_POOL"
            psql "$SIDE_URL" -q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
            for setting in ${BENCH_PG_SETTINGS:-}; do
                psql "$PG_BASE" -q -c "ALTER DATABASE sessiond_bench_$side SET ${setting%%=*} = '${setting#*=}'"
            done
        done
        pin_postgres "$SERVER_CPU"; PG_PINNED=1
        NEW_BIN=$BIN; BIN=$BENCH_BASE
        start_sessiond $((PORT + 55)) "${PG_BASE%/*}/sessiond_bench_base" --runtime "$RUNTIME"; B=$LAST_PID
        BIN=$NEW_BIN
        start_sessiond $((PORT + 56)) "${PG_BASE%/*}/sessiond_bench_new" --runtime "$RUNTIME"; N=$LAST_PID
        start_ceiling $((PORT + 52)) --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in ${BENCH_AB_RPCS:-delete get create}; do
            log "postgres-ab: $rpc"
            LOADGEN_POOL=$PG_POOL loadgen "postgres-ab-$rpc" \
                --title "$rpc: before (base) and after (new), same run (PostgreSQL on the server core)" \
                --server "base=127.0.0.1:$((PORT + 55)),pid=$B" --server "new=127.0.0.1:$((PORT + 56)),pid=$N" \
                --server "ceiling=127.0.0.1:$((PORT + 52)),pid=$C,any-id" \
                --arm "ceiling:grpc:$rpc" --arm "base:grpc:$rpc" --arm "new:grpc:$rpc" \
                --arm "base:rest:$rpc" --arm "new:rest:$rpc"
        done
        LOADGEN_TOKEN=
        cleanup
        psql "$PG_BASE" -q -c 'DROP DATABASE IF EXISTS sessiond_bench_base' -c 'DROP DATABASE IF EXISTS sessiond_bench_new'
        ;;
    runtime)
        log "runtime: current-thread vs multi-thread (the default; tokio sizes it by the allowed CPUs: 1 worker under taskset)"
        copy_db "$SMALL" "$DIR/work.db"
        copy_db "$SMALL" "$DIR/work2.db"
        start_sessiond $((PORT + 11)) "$DIR/work.db" --runtime current-thread; S1=$LAST_PID
        start_sessiond $((PORT + 12)) "$DIR/work2.db" --runtime multi-thread; S2=$LAST_PID
        start_ceiling $((PORT + 13)) --runtime current-thread; C1=$LAST_PID
        start_ceiling $((PORT + 14)) --runtime multi-thread; C2=$LAST_PID
        for rpc in delete get; do
            loadgen "runtime-$rpc" --title "$rpc: runtime flavours" \
                --server "s-current=127.0.0.1:$((PORT + 11)),pid=$S1" --server "s-multi=127.0.0.1:$((PORT + 12)),pid=$S2" \
                --server "c-current=127.0.0.1:$((PORT + 13)),pid=$C1,any-id" --server "c-multi=127.0.0.1:$((PORT + 14)),pid=$C2,any-id" \
                --arm "c-current:grpc:$rpc" --arm "s-current:grpc:$rpc" --arm "c-multi:grpc:$rpc" --arm "s-multi:grpc:$rpc"
        done
        cleanup
        ;;
    sync)
        log "sync: --sync full (fsync before answering) vs normal"
        copy_db "$SMALL" "$DIR/work.db"
        copy_db "$SMALL" "$DIR/work2.db"
        start_sessiond $((PORT + 21)) "$DIR/work.db" --runtime "$RUNTIME" --sync normal; S1=$LAST_PID
        start_sessiond $((PORT + 22)) "$DIR/work2.db" --runtime "$RUNTIME" --sync full; S2=$LAST_PID
        start_ceiling $((PORT + 23)) --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in delete create; do
            loadgen "sync-$rpc" --title "$rpc: --sync full vs normal" \
                --server "normal=127.0.0.1:$((PORT + 21)),pid=$S1" --server "full=127.0.0.1:$((PORT + 22)),pid=$S2" \
                --server "ceiling=127.0.0.1:$((PORT + 23)),pid=$C,any-id" \
                --arm "ceiling:grpc:$rpc" --arm "normal:grpc:$rpc" --arm "full:grpc:$rpc"
        done
        cleanup
        ;;
    million)
        log "million: DeleteSession with 1,000 vs $MILLION sessions stored"
        copy_db "$SMALL" "$DIR/work.db"
        copy_db "$LARGE" "$DIR/work-large.db"
        start_sessiond $((PORT + 31)) "$DIR/work.db" --runtime "$RUNTIME"; S1=$LAST_PID
        start_sessiond $((PORT + 32)) "$DIR/work-large.db" --runtime "$RUNTIME"; S2=$LAST_PID
        start_ceiling $((PORT + 33)) --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in delete get; do
            loadgen "million-$rpc" --title "$rpc: 1,000 vs $MILLION stored" \
                --server "thousand=127.0.0.1:$((PORT + 31)),pid=$S1" --server "million=127.0.0.1:$((PORT + 32)),pid=$S2" \
                --server "ceiling=127.0.0.1:$((PORT + 33)),pid=$C,any-id" \
                --arm "ceiling:grpc:$rpc" --arm "thousand:grpc:$rpc" --arm "million:grpc:$rpc"
        done
        echo "lifetime peak RSS (VmHWM since the last reset): thousand $(grep VmHWM /proc/"$S1"/status | awk '{print $2}') KiB, million $(grep VmHWM /proc/"$S2"/status | awk '{print $2}') KiB" | tee "$OUT/million-rss.txt"
        echo "database files: $(du -h "$DIR/work.db" | cut -f1) and $(du -h "$DIR/work-large.db" | cut -f1)" | tee -a "$OUT/million-rss.txt"
        cleanup
        ;;
    latency)
        # p99 at half of the peak, per protocol: the closed-loop peaks of all four protocols
        # (alternated), then each protocol open-loop at half its own peak, the ceiling beside it
        # at the same rate (what the machine alone adds to the tail).
        copy_db "$SMALL" "$DIR/work.db"
        start_sessiond $GRPC_PORT "$DIR/work.db" --runtime "$RUNTIME"; S=$LAST_PID
        start_ceiling $CEIL_PORT --runtime "$RUNTIME"; C=$LAST_PID
        for rpc in delete get; do
            log "latency: $rpc peaks"
            loadgen "peak-$rpc" --title "$rpc: closed-loop peaks" --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" \
                --arm "sessiond:grpc:$rpc" --arm "sessiond:grpc-web:$rpc" --arm "sessiond:connect:$rpc" \
                --arm "sessiond:rest:$rpc" --rounds 3
            for protocol in grpc grpc-web connect rest; do
                half=$(jq --arg p "$protocol" '.arms[] | select(.protocol == $p) | .rate / 2 | floor' "$OUT/peak-$rpc.json")
                log "latency: $rpc over $protocol at $half calls/s (half its peak), open loop"
                loadgen "latency-$rpc-$protocol" --rate "$half" \
                    --title "$rpc over $protocol: open loop at half its peak ($half calls/s)" \
                    --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" --server "ceiling=127.0.0.1:$CEIL_PORT,pid=$C,any-id" \
                    --arm "ceiling:grpc:$rpc" --arm "sessiond:$protocol:$rpc"
            done
        done
        cleanup
        ;;
    h2load)
        # The same GetSession over gRPC from an independent client. h2load counts any HTTP 200 as
        # a success, so the server's own log (one JSON line per call, with its code) is the judge.
        log "h2load: GetSession over gRPC"
        command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }
        copy_db "$SMALL" "$DIR/work.db"
        start_sessiond $GRPC_PORT "$DIR/work.db" --runtime "$RUNTIME"; S=$LAST_PID
        start_ceiling $CEIL_PORT --runtime "$RUNTIME"; C=$LAST_PID
        ID=$("$BIN/examples/loadgen" --emit-get-body "$OUT/get.grpc")
        H2LOAD_SECS=$(awk -v r="$ROUNDS" -v s="$ROUND_SECS" 'BEGIN { d = int(r * s + 0.5); print (d < 1 ? 1 : d) }')
        {
            echo "sample call (curl --http2-prior-knowledge), session $ID:"
            curl -s --http2-prior-knowledge -o /dev/null -D - --max-time 5 \
                -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $TOKEN" \
                --data-binary @"$OUT/get.grpc" "http://127.0.0.1:$GRPC_PORT/zitadel.session.v2.SessionService/GetSession" |
                tr -d '\r' | grep -Ei '^(HTTP|content-type|grpc-status|grpc-message)'
        } | tee "$OUT/h2load.txt"
        for target in "sessiond $GRPC_PORT $S" "ceiling $CEIL_PORT $C"; do
            read -r name port pid <<<"$target"
            lines0=$(wc -l <"$OUT/sessiond-$GRPC_PORT.log")
            calls0=$(grep -c '"path":"/zitadel.session.v2.SessionService/GetSession"' "$OUT/sessiond-$GRPC_PORT.log" || true)
            ok0=$(grep -c '"path":"/zitadel.session.v2.SessionService/GetSession".*"code":0' "$OUT/sessiond-$GRPC_PORT.log" || true)
            cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            taskset -c "$LOAD_CPU" h2load -c 1 -m "$CONCURRENCY" -t 1 -D "$H2LOAD_SECS" --warm-up-time 1 \
                -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $TOKEN" \
                -d "$OUT/get.grpc" "http://127.0.0.1:$port/zitadel.session.v2.SessionService/GetSession" \
                >"$OUT/h2load-$name.out" 2>&1
            cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            calls1=$(grep -c '"path":"/zitadel.session.v2.SessionService/GetSession"' "$OUT/sessiond-$GRPC_PORT.log" || true)
            ok1=$(grep -c '"path":"/zitadel.session.v2.SessionService/GetSession".*"code":0' "$OUT/sessiond-$GRPC_PORT.log" || true)
            {
                echo
                echo "h2load against $name:"
                grep -E '^(finished in|requests:|status codes:|traffic:)' "$OUT/h2load-$name.out"
                grep -A2 -E '^ +min +max' "$OUT/h2load-$name.out" | head -3
                echo "server CPU during the run: $(((cpu1 - cpu0) * 10)) ms"
                if [[ $name == sessiond ]]; then
                    echo "GetSession calls in the server's log (warm-up included): $((calls1 - calls0)), of which code Ok: $((ok1 - ok0))"
                    echo "other codes (h2load resets the streams still open when its time is up):"
                    tail -n +$((lines0 + 1)) "$OUT/sessiond-$GRPC_PORT.log" | grep '"rpc":"GetSession"' |
                        grep -v '"code":"Ok"' | grep -o '"code":"[A-Za-z]*"' | sort | uniq -c || true
                fi
            } | tee -a "$OUT/h2load.txt"
        done
        cleanup
        ;;
    logging)
        log "logging: one info line per call (default) vs RUST_LOG=warn"
        copy_db "$SMALL" "$DIR/work.db"
        copy_db "$SMALL" "$DIR/work2.db"
        start_sessiond $((PORT + 41)) "$DIR/work.db" --runtime "$RUNTIME"; S1=$LAST_PID
        RUST_LOG=warn start_sessiond $((PORT + 42)) "$DIR/work2.db" --runtime "$RUNTIME"; S2=$LAST_PID
        loadgen "logging-get" --title "get: per-call log line on vs off" \
            --server "log-info=127.0.0.1:$((PORT + 41)),pid=$S1" --server "log-warn=127.0.0.1:$((PORT + 42)),pid=$S2" \
            --arm "log-info:grpc:get" --arm "log-warn:grpc:get"
        cleanup
        ;;
    shapes)
        # The writer's cost per termination by statement shape, outside the server (one core).
        log "shapes: SQLite cost of one termination"
        # The store's settings (16 MiB cache, checkpoints deferred, batches of 64), then one thing
        # changed at a time: the history's layout before and after migrations 0006 and 0007 (issue
        # 13), what the index by session and the sessions' terminated index cost, the page size,
        # the cache.
        STORE="--no-autocheckpoint --cache-kib 16384 --batch 64"
        for variant in "--history by-session" "--history append" "--history chain" "--history append-unindexed" "--history by-time" \
            "--no-history" "--drop-index sessions_terminated" "--page-size 2048" "--page-size 8192" \
            "--cache-kib 65536" "--history by-session --cache-kib 65536"; do
            copy_db "$SMALL" "$DIR/shapes.db"
            # shellcheck disable=SC2086 # the variant is a list of options
            taskset -c "$SERVER_CPU" "$BIN/examples/sqlite_write_shapes" --database "$DIR/shapes.db" --shape minimal \
                $STORE $variant
        done | tee "$OUT/shapes.txt"
        rm -f "$DIR/shapes.db" "$DIR/shapes.db-wal" "$DIR/shapes.db-shm"
        ;;
    overload-h2load)
        # The overload scenario with h2load as the generator (it costs a call a fraction of what
        # examples/loadgen does, so the server, not the generator, saturates): GetSession over
        # gRPC. The peak is the issue's: the highest open-loop rate at which every call succeeds,
        # searched from the closed-loop peak (c=64 on one connection) down in tenths for
        # BENCH_OVERLOAD_PROBE_SECS each. Then open loop at 0.5x, 1.5x and 2x of that peak
        # (BENCH_OVERLOAD_FACTORS) for BENCH_OVERLOAD_SECS each. Open loop is --rps on each of 16
        # connections x 256 streams. h2load counts every HTTP 200 as a success: outcomes and the
        # admitted calls' latency come from the server's /metrics (calls by code, the call
        # duration histogram).
        command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }
        OVERLOAD_SECS=${BENCH_OVERLOAD_SECS:-60}
        PROBE_SECS=${BENCH_OVERLOAD_PROBE_SECS:-10}
        copy_db "$SMALL" "$DIR/work.db"
        # shellcheck disable=SC2086 # BENCH_SERVE_ARGS: serve options to try, word-split on purpose
        start_sessiond $GRPC_PORT "$DIR/work.db" --runtime "$RUNTIME" ${BENCH_SERVE_ARGS:-}; S=$LAST_PID
        ID=$("$BIN/examples/loadgen" --emit-get-body "$OUT/get.grpc")
        h2() {
            taskset -c "$LOAD_CPU" h2load -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
                -H "authorization: Bearer $TOKEN" -d "$OUT/get.grpc" "$@" \
                "http://127.0.0.1:$GRPC_PORT/zitadel.session.v2.SessionService/GetSession"
        }
        metrics() { curl -s "http://127.0.0.1:$((GRPC_PORT + 100))/metrics"; }
        # open_loop LABEL RATE SECS: RATE calls/s offered over 16 connections for SECS; appends a
        # row to the table and leaves "served shed other" (calls/s, calls/s, calls) in $OUT/LABEL.sum.
        open_loop() {
            local label=$1 rate=$2 secs=$3 cpu0 cpu1
            log "overload-h2load: $label, $rate calls/s offered for $secs s"
            metrics >"$OUT/overload-h2load-$label.before"
            cpu0=$(awk '{print $14 + $15}' "/proc/$S/stat")
            if [ -n "${BENCH_OVERLOAD_STAGGER:-}" ]; then
                # The 16 connections opened two a millisecond: each one's --rps timer fires every 10
                # ms, so their bursts interleave and the calls arrive 8 times more evenly.
                h2 -c 16 -m 256 --rps "$((rate / 16))" -r 2 --rate-period 1ms -n "$((rate / 16 * 16 * secs))" \
                    >"$OUT/overload-h2load-$label.out" 2>&1
            else
                h2 -c 16 -m 256 --rps "$((rate / 16))" -D "$secs" >"$OUT/overload-h2load-$label.out" 2>&1
            fi
            cpu1=$(awk '{print $14 + $15}' "/proc/$S/stat")
            metrics >"$OUT/overload-h2load-$label.after"
            python3 - "$OUT/overload-h2load-$label" "$label" "${PEAK:-$rate}" "$CLOSED_PEAK" "$secs" "$((cpu1 - cpu0))" \
                >>"$OUT/overload-h2load.md" <<'PY'
import re, sys
base, label, peak, closed, secs, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
def load(path):
    calls, buckets = {}, {}
    for line in open(path):
        m = re.match(r'sessiond_calls_total\{rpc="([^"]+)",protocol="grpc",code="([^"]+)"\} (\S+)', line)
        if m:
            calls[m.group(2)] = calls.get(m.group(2), 0) + float(m.group(3))
        m = re.match(r'sessiond_call_duration_seconds_bucket\{le="([^"]+)",rpc="GetSession",protocol="grpc"\} (\S+)', line)
        if m:
            buckets[m.group(1)] = float(m.group(2))
    return calls, buckets
(c0, b0), (c1, b1) = load(base + ".before"), load(base + ".after")
delta = {k: c1[k] - c0.get(k, 0) for k in c1}
offered = next((l.split()[3] for l in open(base + ".out") if l.startswith("finished in")), "?").rstrip(",")
ok, shed = delta.get("OK", 0), delta.get("RESOURCE_EXHAUSTED", 0)
other = sum(v for k, v in delta.items() if k not in ("OK", "RESOURCE_EXHAUSTED", "none"))
order = sorted(b1, key=lambda le: float("inf") if le == "+Inf" else float(le))
counts = [(le, b1[le] - b0.get(le, 0)) for le in order]
total = counts[-1][1] if counts else 0
def q(p):
    return next((le for le, n in counts if n >= p * total), "?")
ms = lambda le: le if le in ("?", "+Inf") else f"{float(le) * 1000:.3g}"
limit = next((l.split()[1] for l in open(base + ".after") if l.startswith("sessiond_calls_admission_limit ")), "?")
print(f"| {label} | {offered} | {ok / secs:,.0f} | {ok / secs / peak:.2f} | {ok / secs / closed:.2f} | {shed / secs:,.0f} | "
      f"{other:.0f} | {ticks / 100:.1f} | {ms(q(0.5))} / {ms(q(0.99))} / {ms(q(0.999))} | {limit} |")
with open(base + ".sum", "w") as f:
    print(f"{ok / secs:.0f} {shed / secs:.0f} {other:.0f}", file=f)
PY
        }
        log "overload-h2load: closed-loop peak (session $ID)"
        h2 -c 1 -m "$CONCURRENCY" -D 10 --warm-up-time 1 >"$OUT/overload-h2load-peak.out" 2>&1
        CLOSED_PEAK=$(awk '/^finished in/ { gsub(",", "", $4); printf "%d", $4 }' "$OUT/overload-h2load-peak.out")
        {
            echo "| step | calls/s offered (h2load) | served calls/s | served / peak | served / closed-loop peak | shed calls/s | other failures | server CPU s | admitted p50 / p99 / p99.9 ms (bucket bounds) | admission limit at the end |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        } >"$OUT/overload-h2load.md"
        # The open-loop peak: the highest of 1.0, 0.9, ... 0.5 x the closed-loop peak at which no
        # call failed or was shed and (nearly) every offered call was served.
        PEAK=${BENCH_OVERLOAD_PEAK:-}
        [ -n "$PEAK" ] || for tenth in 10 9 8 7 6 5; do
            rate=$((CLOSED_PEAK * tenth / 10))
            label=probe-$(awk -v t="$tenth" 'BEGIN { printf "%.1fx", t / 10 }')
            PEAK=$rate open_loop "$label" "$rate" "$PROBE_SECS"
            read -r served shed other <"$OUT/overload-h2load-$label.sum"
            if [ "$shed" -eq 0 ] && [ "$other" -eq 0 ] && [ "$served" -ge $((rate * 98 / 100)) ]; then
                PEAK=$rate
                break
            fi
        done
        PEAK=${PEAK:-$((CLOSED_PEAK / 2))}
        for factor in ${BENCH_OVERLOAD_FACTORS:-0.5 1.5 2}; do
            open_loop "${factor}x" "$(awk -v p="$PEAK" -v f="$factor" 'BEGIN { printf "%d", p * f }')" "$OVERLOAD_SECS"
        done
        {
            echo
            echo "peak (open loop, every call served): $PEAK calls/s; closed-loop peak: $CLOSED_PEAK calls/s;" \
                "peak RSS: $(awk '/VmHWM/ { print $2, $3 }' "/proc/$S/status")"
        } >>"$OUT/overload-h2load.md"
        cleanup
        ;;
    overload)
        # Open loop past the peak (issue 12): GetSession over gRPC, the closed-loop peak first,
        # then half of it (the latency baseline), 1.5x and 2x for BENCH_OVERLOAD_SECS each on
        # 4,096 workers over 16 connections. What is admitted must keep its latency; the rest
        # must be refused (RESOURCE_EXHAUSTED) for much less CPU than serving costs.
        OVERLOAD_SECS=${BENCH_OVERLOAD_SECS:-60}
        copy_db "$SMALL" "$DIR/work.db"
        start_sessiond $GRPC_PORT "$DIR/work.db" --runtime "$RUNTIME"; S=$LAST_PID
        log "overload: closed-loop peak"
        loadgen "overload-peak" --title "GetSession over gRPC: closed-loop peak" \
            --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" --arm "sessiond:grpc:get" --rounds 3
        PEAK=$(jq '.arms[0].rate | floor' "$OUT/overload-peak.json")
        for factor in 0.5 1.5 2; do
            offered=$(awk -v p="$PEAK" -v f="$factor" 'BEGIN { printf "%d", p * f }')
            log "overload: ${factor}x the peak ($offered calls/s offered) for $OVERLOAD_SECS s"
            loadgen "overload-$factor" --rate "$offered" --concurrency 4096 --connections 16 --rounds 1 \
                --round-secs "$OVERLOAD_SECS" --warmup-secs 2 \
                --title "GetSession over gRPC: open loop at ${factor}x the peak ($offered calls/s)" \
                --server "sessiond=127.0.0.1:$GRPC_PORT,pid=$S" --arm "sessiond:grpc:get"
        done
        {
            echo "| offered | calls/s offered | served calls/s | served / peak | p99 ms | p99 / half-load p99 | shed | other failures | server CPU us per served call | est. CPU us per shed call | peak RSS MiB |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for factor in 0.5 1.5 2; do
                jq -r --arg f "$factor" --argjson peak "$PEAK" --argjson secs "$OVERLOAD_SECS" \
                    --slurpfile half "$OUT/overload-0.5.json" '
                    .arms[0] as $a | $half[0].arms[0] as $h
                    | ($a.failures["grpc-status 8"] // 0) as $shed
                    | (($a.failures | to_entries | map(select(.key != "grpc-status 8") | .value) | add) // 0) as $other
                    | (($a.cpu_us_per_call // 0) * $a.ok) as $cpu
                    | (if $shed > 0 then (($cpu - $a.ok * ($h.cpu_us_per_call // 0)) / $shed) else null end) as $per_shed
                    | "| \($f)x | \(.rate | floor) | \($a.rate | floor) | \(($a.rate / $peak * 100 | round) / 100) | \($a.p99_ms) | \((($a.p99_ms / $h.p99_ms) * 100 | round) / 100) | \($shed) | \($other) | \($a.cpu_us_per_call) | \(if $per_shed == null then "-" else ($per_shed * 10 | round) / 10 end) | \($a.peak_rss_mib) |"' \
                    "$OUT/overload-$factor.json"
            done
            echo
            echo "peak (closed loop, c=$CONCURRENCY): $PEAK calls/s; shed calls are refused with RESOURCE_EXHAUSTED (grpc-status 8)"
        } | tee "$OUT/overload.md"
        cleanup
        ;;
    ab)
        # Same-run A/B: this build ("new") against a baseline build ("base": BENCH_BASE, the
        # baseline's target/release) on copies of one template, both on the server core, arms
        # alternated round by round.
        [[ -n ${BENCH_BASE:-} ]] || { echo "the ab scenario needs BENCH_BASE=<baseline target/release>" >&2; exit 2; }
        # Each side's template is made by its own binaries, so that each side's B-trees are laid
        # out as its own writes lay them out (a migration that rewrites every row would leave
        # pages emptier than writes do, and flatter the new side); the new one gets the base's
        # user and token.
        AB_TEMPLATE=$DIR/ab-$(sha256sum "$BENCH_BASE/sessiond" | cut -c1-8)-$POOL.db
        AB_NEW_TEMPLATE=$DIR/ab-$(sha256sum "$BIN/sessiond" | cut -c1-8)-$(sha256sum "$BENCH_BASE/sessiond" | cut -c1-8)-$POOL.db
        if [[ ! -f $AB_TEMPLATE || ! -f $AB_TEMPLATE.token ]]; then
            log "ab: template database made by the baseline"
            rm -f "$AB_TEMPLATE" "$AB_TEMPLATE-wal" "$AB_TEMPLATE-shm"
            AB_USER=$("$BENCH_BASE/sessiond" --database "sqlite:$AB_TEMPLATE" users add --login-name bench 2>/dev/null)
            "$BENCH_BASE/sessiond" --database "sqlite:$AB_TEMPLATE" tokens add --user "$AB_USER" \
                --permission session.read --permission session.write --permission session.delete 2>/dev/null >"$AB_TEMPLATE.token"
            "$BENCH_BASE/examples/bulkload" --database "sqlite:$AB_TEMPLATE" --user "$AB_USER" --seed bg --count 1000
            "$BENCH_BASE/examples/bulkload" --database "sqlite:$AB_TEMPLATE" --user "$AB_USER" --seed del --count "$POOL"
            "$BENCH_BASE/sessiond" --database "sqlite:$AB_TEMPLATE" migrate 2>/dev/null
        fi
        if [[ ! -f $AB_NEW_TEMPLATE ]]; then
            command -v sqlite3 >/dev/null || { echo "sqlite3 missing (apt-get install sqlite3)" >&2; exit 1; }
            log "ab: template database made by the new build"
            rm -f "$AB_NEW_TEMPLATE" "$AB_NEW_TEMPLATE-wal" "$AB_NEW_TEMPLATE-shm"
            "$BIN/sessiond" --database "sqlite:$AB_NEW_TEMPLATE" migrate 2>/dev/null
            # The columns both schemas have (a later migration may have added some, with defaults).
            common() {
                sqlite3 "$AB_NEW_TEMPLATE" "ATTACH '$AB_TEMPLATE' AS base; SELECT group_concat(n.name, ', ') \
                    FROM pragma_table_info('$1') n JOIN pragma_table_info('$1', 'base') b USING (name);"
            }
            users=$(common users); tokens=$(common api_tokens)
            sqlite3 "$AB_NEW_TEMPLATE" "ATTACH '$AB_TEMPLATE' AS base; \
                INSERT INTO users ($users) SELECT $users FROM base.users; \
                INSERT INTO api_tokens ($tokens) SELECT $tokens FROM base.api_tokens;"
            AB_USER=$(sqlite3 "$AB_NEW_TEMPLATE" "SELECT id FROM users WHERE login_name = 'bench'")
            "$BIN/examples/bulkload" --database "sqlite:$AB_NEW_TEMPLATE" --user "$AB_USER" --seed bg --count 1000
            "$BIN/examples/bulkload" --database "sqlite:$AB_NEW_TEMPLATE" --user "$AB_USER" --seed del --count "$POOL"
            "$BIN/sessiond" --database "sqlite:$AB_NEW_TEMPLATE" migrate 2>/dev/null
        fi
        LOADGEN_TOKEN=$(cat "$AB_TEMPLATE.token")
        copy_db "$AB_TEMPLATE" "$DIR/ab-base.db"
        copy_db "$AB_NEW_TEMPLATE" "$DIR/ab-new.db"
        NEW_BIN=$BIN; BIN=$BENCH_BASE
        start_sessiond $((PORT + 53)) "$DIR/ab-base.db" --runtime "$RUNTIME"; B=$LAST_PID
        BIN=$NEW_BIN
        start_sessiond $((PORT + 54)) "$DIR/ab-new.db" --runtime "$RUNTIME"; N=$LAST_PID
        for rpc in ${BENCH_AB_RPCS:-delete get create}; do
            log "ab: $rpc"
            loadgen "ab-$rpc" --title "$rpc: before (base) and after (new), same run" \
                --server "base=127.0.0.1:$((PORT + 53)),pid=$B" --server "new=127.0.0.1:$((PORT + 54)),pid=$N" \
                --arm "base:grpc:$rpc" --arm "new:grpc:$rpc" --arm "base:grpc-web:$rpc" --arm "new:grpc-web:$rpc" \
                --arm "base:connect:$rpc" --arm "new:connect:$rpc" --arm "base:rest:$rpc" --arm "new:rest:$rpc"
        done
        LOADGEN_TOKEN=
        cleanup
        ;;
    *)
        echo "unknown scenario $scenario" >&2
        exit 2
        ;;
    esac
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
# One JSON line per call adds up to gigabytes: keep the logs, compressed.
gzip -f "$OUT"/*.log 2>/dev/null || true
cat "$OUT"/machine.txt "$OUT"/*.md "$OUT"/*.txt 2>/dev/null | grep -v '^$' >"$OUT/summary.md" || true
log "results in $OUT (summary.md)"
