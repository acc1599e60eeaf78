#!/usr/bin/env bash
# Builds the libFuzzer targets of Tests/Fuzz (with -sanitize=fuzzer,address) and runs each for a while.
#
#   tools/fuzz.sh [seconds-per-target] [target...]      e.g. tools/fuzz.sh 60 http-parser chunked-decoder
#
# Targets: http-parser chunked-decoder completion-request safetensors-header tokenizer-json (all by default);
# 60 seconds each by default. Each run starts from a copy of the committed seeds (Tests/Fuzz/corpus/<target>) in
# a run folder, so the seeds do not grow; inputs that crash are saved there too. Do not stop (SIGSTOP) a running
# target: libFuzzer reads the pause as a timeout of the input at hand. The last lines are one summary
# line per target; the exit status is 1 when any target crashed (or did not run), 0 otherwise.
#
# Environment: FUZZ_WORK (run folders; default Tests/Fuzz/.build/runs), FUZZ_JOBS (parallel libFuzzer jobs per
# target, default 1), FUZZ_ARGS (extra libFuzzer flags), SWIFT (the swift driver).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/Tests/Fuzz"
ALL_TARGETS=(http-parser chunked-decoder completion-request safetensors-header tokenizer-json)

SECONDS_PER_TARGET="${1:-60}"
[[ $# -gt 0 ]] && shift
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL_TARGETS[@]}")
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [[ "$SECONDS_PER_TARGET" -eq 0 ]]; then
    echo "usage: tools/fuzz.sh [seconds-per-target] [target...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
fi
for target in "${TARGETS[@]}"; do
    if [[ ! -d "$FUZZ/Sources/fuzz-$target" ]]; then
        echo "unknown target '$target' (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

# The largest input each target is given: room for a few pipelined requests, a request body, a header with
# several tensors, and a small tokenizer.json (the seeds are about 4 KB).
max_len() {
    case "$1" in
        http-parser) echo 4096 ;;
        chunked-decoder) echo 2048 ;;
        completion-request) echo 4096 ;;
        safetensors-header) echo 4096 ;;
        tokenizer-json) echo 16384 ;;
    esac
}

SWIFT="${SWIFT:-$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)}"
BUILD="$FUZZ/.build"
echo "Building the fuzz targets (release, -sanitize=fuzzer,address)…"
# SwiftPM keeps the build plan of a path dependency and misses source files added to the root package since the
# last build; a newer manifest makes it plan again.
touch "$FUZZ/Package.swift"
# lld: gold fails on the sanitizer runtime's symbols. Testing is enabled so targets can check internal invariants.
if ! nice -n 5 "$SWIFT" build -c release --package-path "$FUZZ" --scratch-path "$BUILD" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld -Xswiftc -enable-testing; then
    echo "fuzz build failed" >&2
    exit 1
fi
BIN="$("$SWIFT" build -c release --package-path "$FUZZ" --scratch-path "$BUILD" --show-bin-path \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld -Xswiftc -enable-testing)"

RUN_DIR="${FUZZ_WORK:-$BUILD/runs}/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
# Dictionary order (Swift's per-process hash seed) would make runs of the same input differ.
export SWIFT_DETERMINISTIC_HASHING=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:symbolize=1:detect_leaks=1}"
# A failed invariant (fatalError) must reach libFuzzer's handler, which saves the input; Swift's own backtracer
# would take the crash first and can hang the run.
export SWIFT_BACKTRACE=enable=no

SUMMARY=()
STATUS=0
for target in "${TARGETS[@]}"; do
    dir="$RUN_DIR/$target"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp "$FUZZ/corpus/$target/"* "$dir/corpus/" 2>/dev/null
    dict=()
    [[ -f "$FUZZ/dict/$target.dict" ]] && dict=(-dict="$FUZZ/dict/$target.dict")
    jobs=()
    [[ "${FUZZ_JOBS:-1}" -gt 1 ]] && jobs=(-fork="$FUZZ_JOBS")
    echo "== $target: ${SECONDS_PER_TARGET}s, log $dir/log.txt"
    # -timeout: an input that takes seconds is a bug here (the parsers are linear); -rss_limit_mb bounds the
    # ASan-instrumented process, whose quarantine alone takes a few hundred MB.
    nice -n 5 "$BIN/fuzz-$target" "$dir/corpus" "${dict[@]}" "${jobs[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2560 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" ${FUZZ_ARGS:-} >"$dir/log.txt" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log.txt" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$dir/log.txt" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*')
    # Crashes, timeouts, OOMs and leaks fail the run; a slow-unit-* file is only libFuzzer noting the slowest
    # input so far (a paused or starved process produces one too): listed, replay it to judge.
    crashes=$(find "$dir/artifacts" -type f ! -name 'slow-unit-*' | wc -l)
    slow=$(find "$dir/artifacts" -type f -name 'slow-unit-*' | wc -l)
    corpus=$(find "$dir/corpus" -type f | wc -l)
    if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
        STATUS=1
        result="FAILED (exit $rc; see $dir/log.txt and $dir/artifacts)"
    else
        result="ok"
    fi
    [[ $slow -gt 0 ]] && result+=" ($slow slow-unit file(s) in $dir/artifacts)"
    SUMMARY+=("$(printf '%-20s %5ss  execs %-10s exec/s %-7s cov %-6s ft %-6s corpus %-5s crashes %-3s %s' \
        "$target" "$SECONDS_PER_TARGET" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$crashes" "$result")")
    echo "${SUMMARY[-1]}"
done

echo
echo "Fuzzing summary ($RUN_DIR):"
printf '%s\n' "${SUMMARY[@]}"
exit $STATUS
