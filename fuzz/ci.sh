#!/usr/bin/env bash
# A short coverage-guided run of every fuzz target (FUZZING.md has the long runs and their counts).
#
#   fuzz/ci.sh            # each target for FUZZ_SECS seconds (default 30)
#
# Installs cargo-fuzz if it is missing. cargo-fuzz passes nightly-only flags to rustc: the nightly
# toolchain is used when rustup has one, otherwise the stable one with RUSTC_BOOTSTRAP=1. Fails when
# a target crashes (libFuzzer exits non-zero and leaves the input in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")"
SECS=${FUZZ_SECS:-30}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

targets=$("${fuzz[@]}" list)
"${fuzz[@]}" build --sanitizer none
for target in $targets; do
    # The seeds stay as they are: what this run finds goes to a scratch corpus first.
    scratch=$(mktemp -d)
    echo "== fuzz $target for ${SECS}s" >&2
    log=$scratch.log
    if "${fuzz[@]}" run "$target" --sanitizer none "$scratch" "corpus/$target" -- \
        -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1; then status=0; else status=$?; fi
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|deadly signal' "$log" || true
    [ "$status" -eq 0 ] || tail -n 40 "$log" >&2
    rm -rf "$scratch" "$log"
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
