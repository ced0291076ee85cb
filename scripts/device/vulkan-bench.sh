#!/usr/bin/env bash
# Real-GPU check of the Vulkan backend (issue "Vulkan compute backend", item 5), for the lent
# NVIDIA device machine (see the device tool's README). Prints:
#   1. `qgemma devices` (the GPU must be listed, type discrete) and its measured read bandwidth;
#   2. `qgemma bench --backend vulkan -p 512 -n 128` on the synthetic 12B Q4_0 and decode's
#      fraction of the measured bandwidth (bytes of weights per token / bandwidth);
#   2b. decode A/B, -p 0 -n 64 -r 2 each (VKB_AB_MODES, default
#      "fused unfused sg0 rows4 rows8 wg32 wg128 rows4wg128"): fused (the default), unfused
#      (QGEMMA_VK_NO_FUSE=1: one dispatch per graph node, the decode structure before fusion),
#      sg0 (QGEMMA_VK_SUBGROUP=0: shared-memory reductions instead of subgroupAdd), nosplit
#      (QGEMMA_VK_FA_SPLIT=1: attention walks the whole cache per (query, head)), rowsN
#      (QGEMMA_VK_MV_ROWS=N weight rows per workgroup of the int8 matrix-vector shader instead
#      of 2), wgN (QGEMMA_VK_MV_WG=N threads per matrix-vector workgroup instead of 64),
#      rowsNwgM (both);
#   2c. decode after VKB_DEPTH (default 8192) cached tokens (`-d`), split-KV attention (the
#      default) and not (QGEMMA_VK_FA_SPLIT=1);
#   3. one more run with QGEMMA_VK_PROFILE=1: GPU time per pipeline for prefill and decode, and
#      the dispatches and barriers per decode token (fused and unfused);
#   4. the shader tests (tests/vulkan) run on the GPU instead of lavapipe.
#
# Assumptions (the device machine has no compiler toolchain we rely on, and no network):
#   - BUILD_DIR (default build-device) holds an x86-64 Release build made on the workstation and
#     carried to the machine (`carry: ["build-device", ".gl"]`), configured with
#     -DQGEMMA_VULKAN=ON -DQGEMMA_NATIVE=OFF so it runs on the machine's CPU. Only
#     BUILD_DIR/tools/qgemma and BUILD_DIR/tests/vulkan_test_* are used, so a slim copy of those
#     fits the 64 MiB carry limit (e.g. cp build-x/tools/qgemma build-device/tools/; cp
#     build-x/tests/vulkan_test_* build-device/tests/);
#   - .gl/ holds the Vulkan loader debs (libvulkan1 ...), downloaded once on the workstation as
#     the device README says; they are unpacked here when no libvulkan is installed;
#   - the NVIDIA driver's ICD json is under /usr/local/nvidia (else set VK_DRIVER_FILES).
# Step 3 synthesizes the 12B Q4_0 (`qgemma synth --preset 12b --type q4_0`, about 7 GB, into
# WORK_DIR) on the machine itself; bench loads it without repacking (--backend vulkan does).
#
# Usage (from the repository root on the device machine):
#   scripts/device/vulkan-bench.sh [BUILD_DIR] [WORK_DIR]
# Dry runs elsewhere (e.g. on lavapipe: VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json)
# may shrink the work: VKB_PRESET=tiny VKB_P=32 VKB_N=8 VKB_R=1 VKB_BW_MIB=256 VKB_SKIP_TESTS=1.
# Output files (bench JSON, logs) go to $OUT when set (the device tool's result folder).
set -uo pipefail

BUILD_DIR=${1:-build-device}
PRESET=${VKB_PRESET:-12b}
P=${VKB_P:-512}
N=${VKB_N:-128}
R=${VKB_R:-3}
WORK_DIR=${2:-/tmp/qgemma-vk}
RESULTS=${OUT:-$WORK_DIR}
QGEMMA="$BUILD_DIR/tools/qgemma"
mkdir -p "$WORK_DIR" "$RESULTS"

die() { echo "vulkan-bench: $*" >&2; exit 1; }

[ -x "$QGEMMA" ] || die "no $QGEMMA: carry an x86-64 build (cmake -B $BUILD_DIR -DQGEMMA_VULKAN=ON -DQGEMMA_NATIVE=OFF)"

# --- Vulkan loader and NVIDIA driver ---------------------------------------------------------
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  ls .gl/*.deb >/dev/null 2>&1 || die "no libvulkan.so.1 and no .gl/*.deb to unpack (see the device README)"
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
             /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
[ -n "${VK_DRIVER_FILES:-}" ] || die "no NVIDIA Vulkan ICD json found; set VK_DRIVER_FILES"
export VK_ICD_FILENAMES="$VK_DRIVER_FILES"  # older loaders read this name
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
export XDG_CACHE_HOME="$WORK_DIR/cache"  # pipeline cache
echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv 2>/dev/null || true

# --- 1. devices and bandwidth ---------------------------------------------------------------
echo "[${SECONDS}s] step 1"
"$QGEMMA" devices | tee "$RESULTS/devices.txt" || die "qgemma devices failed (loader / driver problem)"
"$QGEMMA" devices --json > "$RESULTS/devices.json"
DEV=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(x["index"] for x in d if x["default"]))' "$RESULTS/devices.json")
TYPE=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[int(sys.argv[2])]["type"])' "$RESULTS/devices.json" "$DEV")
[ "$TYPE" = discrete ] || echo "vulkan-bench: WARNING: default device $DEV is '$TYPE', not the GPU"
export QGEMMA_VK_DEVICE=$DEV
BW_JSON=$("$QGEMMA" devices --bandwidth "$DEV" --bandwidth-mib "${VKB_BW_MIB:-2048}" --json) || die "bandwidth probe failed"
echo "$BW_JSON" | tee "$RESULTS/bandwidth.json"
BW=$(echo "$BW_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["read_bandwidth_gbs"])')
echo "measured read bandwidth: $BW GB/s"

# --- 2. 12B Q4_0 bench -------------------------------------------------------------------------
echo "[${SECONDS}s] step 2"
"$QGEMMA" bench --help 2>&1 | grep -q -- '--backend' || die "this qgemma's bench has no --backend option (an old build?)"
MODEL="$WORK_DIR/gemma4-$PRESET-q4_0.gguf"
if [ ! -f "$MODEL" ]; then
  echo "synthesizing $MODEL ($PRESET q4_0; 12b: about 7 GB) ..."
  "$QGEMMA" synth --preset "$PRESET" --type q4_0 -o "$MODEL" || die "synth failed"
fi
MODEL_BYTES=$(stat -c %s "$MODEL")
"$QGEMMA" bench -m "$MODEL" --backend vulkan --device "$DEV" -p "$P" -n "$N" -r "$R" -o json \
  > "$RESULTS/bench.json" 2> "$RESULTS/bench.err" \
  || { cat "$RESULTS/bench.err" >&2; die "qgemma bench --backend vulkan failed"; }
cat "$RESULTS/bench.json"
# Decode reads every weight once per token (the tied embedding is the output head, so the file
# size is the bytes per token, up to the small norm vectors).
python3 - "$RESULTS/bench.json" "$MODEL_BYTES" "$BW" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))  # llama-bench style: a list of {n_prompt, n_gen, avg_ts, ...}
file_bytes, bw = float(sys.argv[2]), float(sys.argv[3])
for r in rows:
    ts = float(r["avg_ts"])
    test = f"pp{r['n_prompt']}" if r.get("n_prompt") else f"tg{r['n_gen']}"
    line = f"{test} ({r.get('backend', '?')}): {ts:.2f} tok/s"
    if r.get("n_gen"):
        per_token = float(r.get("model_size", file_bytes))
        frac = ts * per_token / (bw * 1e9)
        line += (f" -> decode reads {ts * per_token / 1e9:.0f} GB/s = {100 * frac:.1f}% of the"
                 f" measured {bw:.0f} GB/s (target >= 70%)")
        if r.get("bandwidth_fraction") is not None:  # bench's own probe (1 GiB, best of 5)
            line += (f"; bench's probe: {r['read_bandwidth_gbps']:.0f} GB/s,"
                     f" {100 * float(r['bandwidth_fraction']):.1f}%")
    print(line)
PY

# --- 2b. fusion A/B (decode only) ---------------------------------------------------------------
echo "[${SECONDS}s] step 2b"
if [ -z "${VKB_SKIP_AB:-}" ]; then
  for mode in ${VKB_AB_MODES:-fused unfused sg0 rows4 rows8 wg32 wg128 rows4wg128}; do
    case $mode in
      unfused) envs=QGEMMA_VK_NO_FUSE=1 ;;
      sg0) envs=QGEMMA_VK_SUBGROUP=0 ;;
      nosplit) envs=QGEMMA_VK_FA_SPLIT=1 ;;
      rows*wg*) r=${mode#rows}; envs="QGEMMA_VK_MV_ROWS=${r%wg*} QGEMMA_VK_MV_WG=${mode#*wg}" ;;
      rows*) envs=QGEMMA_VK_MV_ROWS=${mode#rows} ;;
      wg*) envs=QGEMMA_VK_MV_WG=${mode#wg} ;;
      *) envs=QGEMMA_VK_AB=fused ;;
    esac
    env $envs "$QGEMMA" bench -m "$MODEL" \
      --backend vulkan --device "$DEV" -p 0 -n "${VKB_AB_N:-64}" -r 2 --no-bandwidth \
      2> "$RESULTS/ab-$mode.err" | grep -E '^\| .*tg' | sed "s/^/$mode: /" \
      || echo "vulkan-bench: $mode decode run failed"
  done
fi

# --- 2c. split-KV attention at depth (decode after VKB_DEPTH cached tokens) -----------------------
echo "[${SECONDS}s] step 2c"
if [ -z "${VKB_SKIP_DEPTH:-}" ]; then
  for mode in split nosplit; do
    envs=QGEMMA_VK_AB=split
    [ $mode = nosplit ] && envs=QGEMMA_VK_FA_SPLIT=1
    env $envs "$QGEMMA" bench -m "$MODEL" --backend vulkan --device "$DEV" -p 0 -n 32 \
      -d "${VKB_DEPTH:-8192}" -r 1 --no-bandwidth 2> "$RESULTS/depth-$mode.err" \
      | grep -E '^\| .*tg' | sed "s/^/depth $mode: /" || echo "vulkan-bench: depth $mode run failed"
  done
fi

# --- 3. where decode and prefill time goes (GPU timestamps per pipeline) -------------------------
echo "[${SECONDS}s] step 3"
if [ -z "${VKB_SKIP_PROFILE:-}" ]; then
  QGEMMA_VK_PROFILE=1 "$QGEMMA" bench -m "$MODEL" --backend vulkan --device "$DEV" -p "$P" \
    -n "${VKB_PROFILE_N:-32}" -r 1 > "$RESULTS/profile-bench.md" 2> "$RESULTS/profile.txt" \
    || echo "vulkan-bench: profiled run failed"
  head -n "${VKB_PROFILE_LINES:-45}" "$RESULTS/profile.txt"
  grep -E '^per .* run:' "$RESULTS/profile.txt"  # dispatches and barriers per run (token)
  # The same counts without fusion (decode only, short).
  QGEMMA_VK_NO_FUSE=1 QGEMMA_VK_PROFILE=1 "$QGEMMA" bench -m "$MODEL" --backend vulkan \
    --device "$DEV" -p 0 -n 8 -r 1 --no-bandwidth > /dev/null 2> "$RESULTS/profile-unfused.txt" \
    || echo "vulkan-bench: unfused profiled run failed"
  grep -E '^per decode run:' "$RESULTS/profile-unfused.txt" | sed 's/^/unfused: /'
  grep -E 'decode' "$RESULTS/profile-unfused.txt" | head -n 12 | sed 's/^/unfused: /'
fi
# --- 4. shader tests on the GPU (last: the numbers above matter most if time runs out) ----------------------------------------------------------------
echo "[${SECONDS}s] step 4"
status=0
for t in "$BUILD_DIR"/tests/vulkan_test_*; do
  [ -n "${VKB_SKIP_TESTS:-}" ] && break
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  "$t" --gtest_brief=1 2>&1 | tee -a "$RESULTS/vulkan-tests.log" | tail -3 || status=1
done

exit $status
