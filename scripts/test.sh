#!/usr/bin/env bash
# Installs dependencies, builds, and runs every qgemma test:
#   1. Release build (portable x86-64 binary, kernels chosen at run time) + all GoogleTest suites
#      (CPU kernels for every ISA this machine has, loader, runtime, tools, Vulkan on lavapipe)
#   2. formatting check (clang-format, .clang-format at the root)
#   3. ASan + UBSan build of the tests, run
#   4. NEON: aarch64 cross build of the kernel tests, run under qemu-aarch64 -cpu max
#   5. libFuzzer run of the GGUF reader for a bounded time (clang)
# Ends with one line "tests: N passed, M failed" (N counts test executables and checks). Exit code non-zero on any failure.
# Environment: JOBS (default nproc), QGEMMA_FUZZ_SECONDS (default 60), QGEMMA_TEST_STAGES (default
# "release format asan neon fuzz").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-$(nproc)}
STAGES=${QGEMMA_TEST_STAGES:-"release format asan neon fuzz"}
FUZZ_SECONDS=${QGEMMA_FUZZ_SECONDS:-60}

scripts/install-deps.sh || { echo "test.sh: dependency installation failed"; exit 1; }

passed=0
failed=0
failures=()

# run_ctest NAME BUILD_DIR: runs ctest there and adds its counts to the totals.
run_ctest() {
  local name=$1 dir=$2 log
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" 2>&1) | tee "$log"
  local line
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failures+=("$name: ctest printed no summary")
  else
    local nfail ntotal
    nfail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    ntotal=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
    passed=$((passed + ntotal - nfail)); failed=$((failed + nfail))
    [ "$nfail" = 0 ] || failures+=("$name: $nfail of $ntotal suites failed")
    [ "$ntotal" -gt 0 ] || { failed=$((failed + 1)); failures+=("$name: no tests found"); }
  fi
  rm -f "$log"
}

# step NAME CMD...: a pass/fail check that is not a ctest run.
step() {
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null && cmake --build "$dir" -j "$JOBS"
}

format_check() {
  local files
  files=$(git ls-files '*.cpp' '*.h' '*.hpp' '*.cc')
  [ -z "$files" ] && return 0
  # shellcheck disable=SC2086
  clang-format --dry-run -Werror $files
}

fuzz_run() {
  local dir=build-fuzz corpus
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$dir" -G Ninja -DQGEMMA_FUZZ=ON -DQGEMMA_BUILD_TESTS=OFF \
    -DQGEMMA_BUILD_BENCH=OFF -DQGEMMA_VULKAN=OFF >/dev/null || return 1
  cmake --build "$dir" -j "$JOBS" --target fuzz_gguf || return 1
  corpus=$(mktemp -d)
  "$dir/fuzz/fuzz_gguf" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 "$corpus" $( [ -d "$ROOT/fuzz/seeds" ] && echo "$ROOT/fuzz/seeds") 2>&1 | tail -n 15
  local rc=${PIPESTATUS[0]}
  rm -rf "$corpus"
  return "$rc"
}

for stage in $STAGES; do
  case $stage in
    release)
      echo "=== release build"
      if build build; then run_ctest release build
      else failed=$((failed + 1)); failures+=("release build"); fi ;;
    format) step "clang-format check" format_check ;;
    asan)
      echo "=== ASan+UBSan build"
      if build build-asan -DQGEMMA_SANITIZE=ON -DQGEMMA_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
          QGEMMA_SANITIZED=1 run_ctest asan build-asan
      else failed=$((failed + 1)); failures+=("asan build"); fi ;;
    neon)
      echo "=== NEON cross build (aarch64) + qemu"
      if build build-arm -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-toolchain.cmake" -DQGEMMA_KERNELS_ONLY=ON; then
        QEMU_CPU=max QGEMMA_EMULATED=1 run_ctest neon build-arm
      else failed=$((failed + 1)); failures+=("neon build"); fi ;;
    fuzz)
      if [ -f fuzz/CMakeLists.txt ]; then step "libFuzzer GGUF reader (${FUZZ_SECONDS}s)" fuzz_run; fi ;;
    *) echo "test.sh: unknown stage '$stage'"; exit 2 ;;
  esac
done

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
