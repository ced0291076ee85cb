#include "runtime/vulkan/ops.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "loader/error.h"

namespace qgemma::vk {
namespace {

using Arg = Recorder::Arg;

// Module suffix of a weight format, or nullptr when no shader reads it.
const char* format_suffix(TensorType t) {
  switch (t) {
    case TensorType::Q4_0:
      return "q4_0";
    case TensorType::Q8_0:
      return "q8_0";
    case TensorType::Q4_K:
      return "q4_k";
    case TensorType::Q5_K:
      return "q5_k";
    case TensorType::Q6_K:
      return "q6_k";
    case TensorType::F16:
      return "f16";
    case TensorType::BF16:
      return "bf16";
    case TensorType::F32:
      return "f32";
    default:
      return nullptr;
  }
}

int64_t block_elems(TensorType t) { return type_traits(t).block_size; }

[[noreturn]] void fail(const std::string& op, const std::string& what) {
  throw Error("Vulkan " + op + ": " + what);
}

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(op, what);
}

void require_view(const View& v, size_t bytes, const char* op, const char* name) {
  if (!v.buffer) fail(op, std::string(name) + " is missing");
  if (v.offset + v.size() > v.buffer->size() || v.size() < bytes) {
    fail(op, std::string(name) + " holds " + std::to_string(v.size()) + " bytes, needs " +
                 std::to_string(bytes));
  }
}

// Splits a workgroup count into x (at most 65535, the guaranteed limit) and y.
struct Grid {
  uint32_t x, y;
};
Grid fold(uint64_t groups) {
  const uint32_t gx = (uint32_t)std::min<uint64_t>(std::max<uint64_t>(groups, 1), 65535);
  return {gx, (uint32_t)((groups + gx - 1) / gx)};
}

uint32_t ceil_div(uint64_t a, uint64_t b) { return (uint32_t)((a + b - 1) / b); }

// A stand-in binding for an absent optional buffer (never read by the shader).
View or_dummy(const View& v, const View& dummy) { return v.buffer ? v : dummy; }

}  // namespace

bool matmul_supported_on_gpu(TensorType wtype) {
  return wtype == TensorType::Q4_0 || wtype == TensorType::Q8_0 || wtype == TensorType::Q4_K ||
         wtype == TensorType::Q5_K || wtype == TensorType::Q6_K || wtype == TensorType::F16 ||
         wtype == TensorType::BF16 || wtype == TensorType::F32;
}

static void check_matmul(const char* op, TensorType wtype, const View& w, const View& x,
                         const View& y, uint32_t M, uint32_t K, uint32_t N, uint32_t xs,
                         uint32_t ys) {
  require(matmul_supported_on_gpu(wtype), op,
          "no shader for weight type " + std::string(type_traits(wtype).name));
  require(K % block_elems(wtype) == 0, op,
          "K = " + std::to_string(K) + " is not a multiple of the " +
              std::string(type_traits(wtype).name) + " block size");
  require(xs >= K && ys >= M, op, "strides smaller than the rows");
  require_view(w, row_size(wtype, K) * M, op, "weights");
  require_view(x, ((size_t)(N - 1) * xs + K) * 4, op, "activations");
  require_view(y, ((size_t)(N - 1) * ys + M) * 4, op, "output");
}

static int& subgroup_reduce_override() {
  // -1: automatic; 0 / 1: forced by set_subgroup_reduce (tests, measurements).
  static int v = -1;
  return v;
}

bool subgroup_reduce_enabled(const Device& dev) {
  // QGEMMA_VK_SUBGROUP=0 forces the shared-memory reductions (A/B on real GPUs).
  static const bool disabled = [] {
    const char* e = std::getenv("QGEMMA_VK_SUBGROUP");
    return e && *e == '0';
  }();
  const int o = subgroup_reduce_override();
  if (o >= 0) return o == 1 && dev.info().subgroup_arithmetic;
  return !disabled && dev.info().subgroup_arithmetic;
}

void set_subgroup_reduce(int mode) {
  require(mode >= -1 && mode <= 1, "set_subgroup_reduce", "mode outside [-1, 1]");
  subgroup_reduce_override() = mode;
}

// The module of a shader with workgroup reductions: <name>_sg when subgroup reductions are on.
static std::string reduction_module(const Device& dev, std::string name) {
  return subgroup_reduce_enabled(dev) ? name + "_sg" : name;
}

static uint32_t& matvec_wg_setting() {
  // QGEMMA_VK_MV_WG=N (32, 64, 128 or 256): threads per workgroup of the matrix-vector shaders.
  // Default 64; a knob for measuring on real GPUs.
  static uint32_t wg = [] {
    const char* e = std::getenv("QGEMMA_VK_MV_WG");
    const int v = e ? std::atoi(e) : 0;
    return v == 32 || v == 64 || v == 128 || v == 256 ? (uint32_t)v : 64u;
  }();
  return wg;
}

uint32_t matvec_wg() { return matvec_wg_setting(); }
void set_matvec_wg(uint32_t wg) {
  require(wg == 32 || wg == 64 || wg == 128 || wg == 256, "set_matvec_wg",
          "threads per workgroup must be 32, 64, 128 or 256");
  matvec_wg_setting() = wg;
}

void mul_mat_vec(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
                 uint32_t N, uint32_t x_stride, uint32_t y_stride) {
  if (!x_stride) x_stride = K;
  if (!y_stride) y_stride = M;
  require(N >= 1 && N <= 8, "mul_mat_vec", "N = " + std::to_string(N) + " outside [1, 8]");
  check_matmul("mul_mat_vec", wtype, w, x, y, M, K, N, x_stride, y_stride);
  constexpr uint32_t kRows = 2;
  const uint32_t spec[] = {matvec_wg(), N, kRows};
  const Pipeline& p = rec.device().pipeline(
      reduction_module(rec.device(), std::string("mul_mat_vec_") + format_suffix(wtype)), spec, 3,
      24);
  const Grid g = fold(ceil_div(M, kRows));
  const uint32_t push[] = {M, K, (uint32_t)row_size(wtype, K), x_stride, y_stride, g.x};
  const Arg args[] = {{w, false}, {x, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, g.x, g.y);
}

void mul_mm(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
            uint32_t N, uint32_t x_stride, uint32_t y_stride) {
  if (!x_stride) x_stride = K;
  if (!y_stride) y_stride = M;
  require(N >= 1, "mul_mm", "N = 0");
  check_matmul("mul_mm", wtype, w, x, y, M, K, N, x_stride, y_stride);
  constexpr uint32_t kTile = 64;
  const uint32_t spec[] = {kTile, kTile};
  const Pipeline& p =
      rec.device().pipeline(std::string("mul_mm_") + format_suffix(wtype), spec, 3, 24);
  const uint32_t push[] = {M, N, K, (uint32_t)row_size(wtype, K), x_stride, y_stride};
  const Arg args[] = {{w, false}, {x, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, ceil_div(M, kTile), ceil_div(N, kTile));
}

bool int_dot_supported(const Device& dev, TensorType wtype) {
  // QGEMMA_VK_NO_INT_DOT=1 forces the float path (comparisons, benchmarks).
  static const bool disabled = [] {
    const char* e = std::getenv("QGEMMA_VK_NO_INT_DOT");
    return e && *e && *e != '0';
  }();
  return !disabled && dev.info().int_dot &&
         (wtype == TensorType::Q4_0 || wtype == TensorType::Q8_0);
}

size_t q8_activation_bytes(uint32_t K, uint32_t N) { return (size_t)K / 32 * 40 * N; }

void quantize_q8(Recorder& rec, View x, View xq, uint32_t K, uint32_t N, uint32_t x_stride) {
  if (!x_stride) x_stride = K;
  require(K % 32 == 0, "quantize_q8", "K = " + std::to_string(K) + " is not a multiple of 32");
  require_view(x, ((size_t)(N - 1) * x_stride + K) * 4, "quantize_q8", "activations");
  require_view(xq, q8_activation_bytes(K, N), "quantize_q8", "quantized activations");
  const Pipeline& p = rec.device().pipeline("quantize_q8", {}, 2, 12);
  const uint32_t push[] = {K / 32, N, x_stride};
  const Arg args[] = {{x, false}, {xq, true}};
  rec.dispatch(p, args, push, sizeof push, ceil_div((uint64_t)K / 32 * N, 8));  // 8 blocks/group
}

static uint32_t& matvec_rows_setting() {
  // QGEMMA_VK_MV_ROWS=N (1..16): weight rows per workgroup of the integer-dot matrix-vector
  // (more rows: fewer reads of the quantized activations per weight byte, more loads in flight
  // per thread). Default 2; a knob for measuring on real GPUs.
  static uint32_t rows = [] {
    const char* e = std::getenv("QGEMMA_VK_MV_ROWS");
    const int v = e ? std::atoi(e) : 0;
    return v >= 1 && v <= 16 ? (uint32_t)v : 2u;
  }();
  return rows;
}

uint32_t matvec_rows() { return matvec_rows_setting(); }
void set_matvec_rows(uint32_t rows) {
  require(rows >= 1 && rows <= 16, "set_matvec_rows", "rows outside [1, 16]");
  matvec_rows_setting() = rows;
}

static void mul_mat_vec_q8_impl(Recorder& rec, TensorType wtype, uint32_t n_seg, const View* w,
                                const uint32_t* M, const View* y, const uint32_t* y_stride, View xq,
                                uint32_t K, uint32_t N, bool glu) {
  const char* op = "mul_mat_vec_q8";
  require(int_dot_supported(rec.device(), wtype), op,
          "needs integer dot products on the device and Q4_0/Q8_0 weights");
  require(N >= 1 && N <= 8, op, "N = " + std::to_string(N) + " outside [1, 8]");
  require(K % 32 == 0, op, "K = " + std::to_string(K) + " is not a multiple of 32");
  require(n_seg >= 1 && n_seg <= 3, op, "1 to 3 weight matrices");
  require(!glu || (n_seg == 2 && M[0] == M[1]), op, "glu needs two matrices of equal rows");
  require_view(xq, q8_activation_bytes(K, N), op, "quantized activations");
  const uint32_t kRows = matvec_rows();
  uint32_t groups[3] = {0, 0, 0}, ys[3] = {0, 0, 0};
  for (uint32_t i = 0; i < n_seg; ++i) {
    require(M[i] >= 1, op, "a matrix without rows");
    require_view(w[i], row_size(wtype, K) * M[i], op, "weights");
    ys[i] = y_stride && y_stride[i] ? y_stride[i] : M[i];
    if (!(glu && i == 1)) require_view(y[i], ((size_t)(N - 1) * ys[i] + M[i]) * 4, op, "output");
    groups[i] = glu && i > 0 ? 0 : ceil_div(M[i], kRows);
  }
  const size_t shared = (size_t)(glu ? 2 : 1) * kRows * N * matvec_wg() * 4;
  require(shared <= rec.device().info().max_shared_memory, op,
          "rows x columns x threads per workgroup need " + std::to_string(shared) +
              " bytes of shared memory, the device has " +
              std::to_string(rec.device().info().max_shared_memory) +
              " (lower QGEMMA_VK_MV_ROWS or QGEMMA_VK_MV_WG)");
  const uint32_t spec[] = {matvec_wg(), N, kRows, n_seg, glu ? 1u : 0u};
  const Pipeline& p = rec.device().pipeline(
      reduction_module(rec.device(), std::string("mul_mat_vec_q8_") + format_suffix(wtype)), spec,
      7, 48);
  const uint32_t g0 = glu ? 0xFFFFFFFFu : groups[0], g1 = groups[0] + groups[1];
  const Grid g = fold((uint64_t)groups[0] + groups[1] + groups[2]);
  uint32_t m[3] = {0, 0, 0};  // M holds n_seg entries
  for (uint32_t i = 0; i < n_seg; ++i) m[i] = M[i];
  const uint32_t push[] = {m[0],        m[1],  m[2],  K,     (uint32_t)row_size(wtype, K),
                           K / 32 * 10, ys[0], ys[1], ys[2], g.x,
                           g0,          g1};
  // Unused bindings: the first weights (read) and xq (never written by the shader).
  const Arg args[] = {{w[0], false},
                      {n_seg > 1 ? w[1] : w[0], false},
                      {n_seg > 2 ? w[2] : w[0], false},
                      {xq, false},
                      {y[0], true},
                      n_seg > 1 && !glu ? Arg{y[1], true} : Arg{xq, false},
                      n_seg > 2 ? Arg{y[2], true} : Arg{xq, false}};
  rec.dispatch(p, args, push, sizeof push, g.x, g.y);
}

void mul_mat_vec_q8(Recorder& rec, TensorType wtype, View w, View xq, View y, uint32_t M,
                    uint32_t K, uint32_t N, uint32_t y_stride) {
  mul_mat_vec_q8_impl(rec, wtype, 1, &w, &M, &y, &y_stride, xq, K, N, false);
}

void mul_mat_vec_q8_multi(Recorder& rec, TensorType wtype, uint32_t n_seg, const View* w,
                          const uint32_t* M, const View* y, View xq, uint32_t K, uint32_t N,
                          bool glu) {
  mul_mat_vec_q8_impl(rec, wtype, n_seg, w, M, y, nullptr, xq, K, N, glu);
}

bool mm_int_dot_enabled(const Device& dev, TensorType wtype) {
  static const bool forced_float = [] {
    const char* e = std::getenv("QGEMMA_VK_MM_FLOAT");
    return e && *e && *e != '0';
  }();
  return !forced_float && int_dot_supported(dev, wtype);
}

void mul_mm_q8(Recorder& rec, TensorType wtype, View w, View xq, View y, uint32_t M, uint32_t K,
               uint32_t N, uint32_t y_stride) {
  const char* op = "mul_mm_q8";
  if (!y_stride) y_stride = M;
  require(int_dot_supported(rec.device(), wtype), op,
          "needs integer dot products on the device and Q4_0/Q8_0 weights");
  require(N >= 1 && M >= 1, op, "empty matrix");
  require(K % 32 == 0, op, "K = " + std::to_string(K) + " is not a multiple of 32");
  require(y_stride >= M, op, "output stride smaller than the rows");
  require_view(w, row_size(wtype, K) * M, op, "weights");
  require_view(xq, q8_activation_bytes(K, N), op, "quantized activations");
  require_view(y, ((size_t)(N - 1) * y_stride + M) * 4, op, "output");
  constexpr uint32_t kTile = 64, kBlocks = 2;  // 64 x 64 outputs, k-tiles of 2 blocks of 32
  const uint32_t spec[] = {kTile, kTile, kBlocks};
  const Pipeline& p =
      rec.device().pipeline(std::string("mul_mm_q8_") + format_suffix(wtype), spec, 3, 24);
  const uint32_t push[] = {M, N, K, (uint32_t)row_size(wtype, K), K / 32 * 10, y_stride};
  const Arg args[] = {{w, false}, {xq, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, ceil_div(M, kTile), ceil_div(N, kTile));
}

void matmul(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
            uint32_t N, View q8_scratch) {
  if (N > 8) {
    if (q8_scratch.buffer && mm_int_dot_enabled(rec.device(), wtype)) {
      quantize_q8(rec, x, q8_scratch, K, N);
      return mul_mm_q8(rec, wtype, w, q8_scratch, y, M, K, N);
    }
    return mul_mm(rec, wtype, w, x, y, M, K, N);
  }
  if (q8_scratch.buffer && int_dot_supported(rec.device(), wtype)) {
    quantize_q8(rec, x, q8_scratch, K, N);
    return mul_mat_vec_q8(rec, wtype, w, q8_scratch, y, M, K, N);
  }
  mul_mat_vec(rec, wtype, w, x, y, M, K, N);
}

void flash_attn(Recorder& rec, const FlashAttnParams& a) {
  const char* op = "flash_attn";
  require(a.kv_type == TensorType::F16 || a.kv_type == TensorType::Q8_0, op,
          "KV type must be F16 or Q8_0");
  require(a.head_dim % 32 == 0 && a.head_dim >= 32 && a.head_dim <= 1024, op,
          "head_dim " + std::to_string(a.head_dim) + " is not a multiple of 32 in [32, 1024]");
  require(a.n_kv_head > 0 && a.n_head % a.n_kv_head == 0, op,
          "n_head is not a multiple of n_kv_head");
  require(!a.q_group.buffer == !a.kv_group.buffer, op, "give both group arrays or neither");
  require(a.q_stride_head >= a.head_dim && a.out_stride_head >= a.head_dim, op, "head strides");
  if (a.n_q == 0 || a.n_head == 0) return;
  require(a.n_q <= rec.device().info().max_workgroup_count[0], op,
          "too many queries for one dispatch");
  require_view(a.q,
               ((size_t)(a.n_q - 1) * a.q_stride_token + (size_t)(a.n_head - 1) * a.q_stride_head +
                a.head_dim) *
                   4,
               op, "q");
  require_view(a.out,
               ((size_t)(a.n_q - 1) * a.out_stride_token +
                (size_t)(a.n_head - 1) * a.out_stride_head + a.head_dim) *
                   4,
               op, "out");
  const size_t row = row_size(a.kv_type, a.head_dim);
  if (a.n_kv) {
    require_view(
        a.k,
        (size_t)(a.n_kv - 1) * a.k_stride_slot + (size_t)(a.n_kv_head - 1) * a.k_stride_head + row,
        op, "k");
    require_view(
        a.v,
        (size_t)(a.n_kv - 1) * a.v_stride_slot + (size_t)(a.n_kv_head - 1) * a.v_stride_head + row,
        op, "v");
    require_view(a.kv_pos, (size_t)a.n_kv * 4, op, "kv_pos");
  }
  require_view(a.q_pos, (size_t)a.n_q * 4, op, "q_pos");
  const bool q8 = a.out_q8.buffer != nullptr;
  if (q8) {
    require(a.out_stride_head == a.head_dim && a.out_stride_token % 32 == 0, op,
            "Q8 output needs packed heads and rows of a multiple of 32");
    require_view(a.out_q8, q8_activation_bytes(a.out_stride_token, a.n_q), op, "out_q8");
  }
  const uint32_t wg = a.head_dim % 64 == 0 ? 64 : 32;
  // Split-KV: parts of split_len slots (a multiple of the tile), merged by fa_combine.
  uint32_t n_split =
      a.n_split ? a.n_split : (a.partials.buffer ? flash_attn_splits(a.n_q, a.n_head, a.n_kv) : 1);
  n_split = std::max<uint32_t>(1, std::min<uint32_t>(n_split, ceil_div(a.n_kv, wg)));
  const uint32_t split_len = ceil_div(ceil_div(a.n_kv, n_split), wg) * wg;
  if (n_split > 1) n_split = ceil_div(a.n_kv, split_len);
  const bool split = n_split > 1;
  if (split) {
    require(n_split <= rec.device().info().max_workgroup_count[2], op, "too many KV splits");
    require_view(a.partials, flash_attn_partial_bytes(a.n_q, a.n_head, a.head_dim, n_split), op,
                 "partials (split-KV scratch)");
  }
  const uint32_t spec[] = {wg, a.head_dim, q8 && !split ? 1u : 0u, split ? 1u : 0u};
  const Pipeline& p = rec.device().pipeline(
      std::string("flash_attn_") + (a.kv_type == TensorType::F16 ? "f16" : "q8_0"), spec, 10, 64);
  struct {
    uint32_t n_q, n_head, n_kv_head, n_kv;
    uint32_t qst, qsh, ost, osh, kss, ksh, vss, vsh;
    int32_t window;
    float scale;
    uint32_t has_groups;
    uint32_t split_len;
  } push{a.n_q,
         a.n_head,
         a.n_kv_head,
         a.n_kv,
         a.q_stride_token,
         a.q_stride_head,
         a.out_stride_token,
         a.out_stride_head,
         a.k_stride_slot,
         a.k_stride_head,
         a.v_stride_slot,
         a.v_stride_head,
         a.window,
         a.scale,
         a.q_group.buffer ? 1u : 0u,
         split_len};
  static_assert(sizeof push == 64);
  // Absent inputs (no cache yet, no groups) are bound to q_pos; the shader never reads them.
  const View d = a.q_pos;
  const Arg args[] = {{a.q, false},
                      {or_dummy(a.n_kv ? a.k : View{}, d), false},
                      {or_dummy(a.n_kv ? a.v : View{}, d), false},
                      {a.q_pos, false},
                      {or_dummy(a.n_kv ? a.kv_pos : View{}, d), false},
                      {or_dummy(a.q_group, d), false},
                      {or_dummy(a.kv_group, d), false},
                      split ? Arg{d, false} : Arg{a.out, true},
                      q8 && !split ? Arg{a.out_q8, true} : Arg{d, false},
                      split ? Arg{a.partials, true} : Arg{d, false}};
  rec.dispatch(p, args, &push, sizeof push, a.n_q, a.n_head, n_split);
  if (!split) return;
  const uint32_t cspec[] = {wg, a.head_dim, q8 ? 1u : 0u};
  const Pipeline& c = rec.device().pipeline("fa_combine", cspec, 3, 16);
  const uint32_t cpush[] = {a.n_head, n_split, a.out_stride_token, a.out_stride_head};
  const Arg cargs[] = {
      {a.partials, false}, {a.out, true}, q8 ? Arg{a.out_q8, true} : Arg{d, false}};
  rec.dispatch(c, cargs, cpush, sizeof cpush, a.n_q, a.n_head);
}

static int& flash_attn_split_setting() {
  // QGEMMA_VK_FA_SPLIT=N: at most N parts per (query, head) (1: no split-KV); default 64.
  static int v = [] {
    const char* e = std::getenv("QGEMMA_VK_FA_SPLIT");
    const int n = e ? std::atoi(e) : 0;
    return n >= 1 ? n : 64;
  }();
  return v;
}

void set_flash_attn_max_splits(uint32_t n) {
  require(n >= 1, "set_flash_attn_max_splits", "at least one part");
  flash_attn_split_setting() = static_cast<int>(n);
}

uint32_t flash_attn_splits(uint32_t n_q, uint32_t n_head, uint32_t n_kv) {
  // Decoding runs n_q * n_head workgroups (16 for one Gemma 4 token), far fewer than a GPU runs
  // at once, each walking the whole cache. Split the cache into parts of at least kMinSlots
  // (4 tiles: the merge costs one more dispatch and the parts' partial states) until about
  // kTarget workgroups run.
  constexpr uint32_t kTarget = 256, kMinSlots = 256;
  const uint32_t groups = std::max<uint32_t>(1, n_q * n_head);
  if (groups >= kTarget || n_kv < 2 * kMinSlots) return 1;
  const uint32_t by_work = ceil_div(kTarget, groups), by_len = n_kv / kMinSlots;
  return std::max<uint32_t>(
      1, std::min({by_work, by_len, static_cast<uint32_t>(flash_attn_split_setting())}));
}

size_t flash_attn_partial_bytes(uint32_t n_q, uint32_t n_head, uint32_t head_dim,
                                uint32_t n_split) {
  return (size_t)n_q * n_head * n_split * (head_dim + 2) * 4;
}

void kv_store(Recorder& rec, TensorType kv_type, View src, View slots, View cache, uint32_t tokens,
              uint32_t n_kv_head, uint32_t head_dim, uint32_t stride_slot, uint32_t stride_head,
              uint32_t src_stride, View src1, View cache1) {
  const char* op = "kv_store";
  if (!src_stride) src_stride = n_kv_head * head_dim;
  require(kv_type == TensorType::F16 || kv_type == TensorType::Q8_0, op,
          "KV type must be F16 or Q8_0");
  require(head_dim % 32 == 0, op, "head_dim is not a multiple of 32");
  require(stride_slot % 4 == 0 && stride_head % 4 == 0, op,
          "cache strides must be multiples of 4 bytes");
  require(row_size(kv_type, head_dim) % 4 == 0, op, "cache rows must be a multiple of 4 bytes");
  require(!src1.buffer == !cache1.buffer, op, "give both src1 and cache1 or neither");
  if (tokens == 0) return;
  const size_t src_bytes = ((size_t)(tokens - 1) * src_stride + (size_t)n_kv_head * head_dim) * 4;
  require_view(src, src_bytes, op, "src");
  if (src1.buffer) require_view(src1, src_bytes, op, "src1");
  require_view(slots, (size_t)tokens * 4, op, "slots");
  const Pipeline& p = rec.device().pipeline(
      std::string("kv_store_") + (kv_type == TensorType::F16 ? "f16" : "q8_0"), {}, 5, 24);
  const uint32_t push[] = {tokens, n_kv_head, head_dim, src_stride, stride_slot, stride_head};
  // Without a second tensor its bindings repeat the first (z = 1 is not dispatched).
  const bool two = src1.buffer != nullptr;
  const Arg args[] = {{src, false},
                      {slots, false},
                      {cache, true},
                      {two ? src1 : src, false},
                      two ? Arg{cache1, true} : Arg{src, false}};
  // F16: a thread per word of the cache rows; Q8_0: a thread per row.
  const uint64_t threads =
      (uint64_t)tokens * n_kv_head * (kv_type == TensorType::F16 ? head_dim / 2 : 1);
  const Grid g = fold(ceil_div(threads, 64));
  rec.dispatch(p, args, push, sizeof push, g.x, g.y, two ? 2 : 1);
}

bool norm_chain_supported(const Device& dev, uint32_t n) {
  (void)dev;
  return n % 4 == 0 && n > 0 && n <= 512 * 4 * 16;
}

void norm_chain(Recorder& rec, const NormChain& c) {
  const char* op = "norm_chain";
  require(norm_chain_supported(rec.device(), c.n), op,
          "row length " + std::to_string(c.n) + " is not a multiple of 4 in [4, 32768]");
  require(!c.xq.buffer || c.n % 32 == 0, op, "Q8 output needs rows of a multiple of 32");
  require(!c.norm2 || c.a.buffer, op, "the second norm needs an output");
  if (c.rows == 0) return;
  const size_t bytes = (size_t)c.n * c.rows * 4;
  require_view(c.x, bytes, op, "x");
  require_view(c.h, bytes, op, "h");
  if (c.res.buffer) require_view(c.res, bytes, op, "res");
  if (c.norm2) require_view(c.a, bytes, op, "a");
  if (c.norm1 && c.w1.buffer) require_view(c.w1, (size_t)c.n * 4, op, "w1");
  if (c.norm2 && c.w2.buffer) require_view(c.w2, (size_t)c.n * 4, op, "w2");
  if (c.xq.buffer) require_view(c.xq, q8_activation_bytes(c.n, c.rows), op, "xq");
  // About 8 elements (2 vec4) per thread: 32 threads for 256, 512 for 3840.
  const uint32_t n4 = c.n / 4;
  uint32_t wg = 32;
  while (wg < 512 && wg * 2 < n4 && wg * 2 <= rec.device().info().max_workgroup_invocations)
    wg *= 2;
  const uint32_t items = ceil_div(n4, wg);
  const bool has_w1 = c.norm1 && c.w1.buffer, has_w2 = c.norm2 && c.w2.buffer;
  const uint32_t spec[] = {wg,
                           items,
                           c.norm1 ? 1u : 0u,
                           has_w1 ? 1u : 0u,
                           c.res.buffer ? 1u : 0u,
                           c.norm2 ? 1u : 0u,
                           has_w2 ? 1u : 0u,
                           c.xq.buffer ? 1u : 0u};
  const Pipeline& p =
      rec.device().pipeline(reduction_module(rec.device(), "norm_chain"), spec, 7, 24);
  const Grid g = fold(c.rows);
  struct {
    uint32_t n, rows, gx;
    float eps1, eps2, s;
  } push{c.n, c.rows, g.x, c.eps1, c.eps2, c.s};
  const View& d = c.x;  // stand-in for absent inputs (never read)
  const Arg args[] = {{c.x, false},
                      {has_w1 ? c.w1 : d, false},
                      {c.res.buffer ? c.res : d, false},
                      {c.h, true},
                      {has_w2 ? c.w2 : d, false},
                      c.norm2 ? Arg{c.a, true} : Arg{d, false},
                      c.xq.buffer ? Arg{c.xq, true} : Arg{d, false}};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

void head_norm_rope(Recorder& rec, const HeadNormRope& h) {
  const char* op = "head_norm_rope";
  require(h.head_dim % 2 == 0 && h.head_dim >= 2, op, "odd head_dim");
  require(h.head_dim <= 4096, op, "head_dim above 4096");
  if (h.tokens == 0) return;
  const size_t qs = (size_t)h.n_q_head * h.head_dim, ks = (size_t)h.n_k_head * h.head_dim,
               vs = (size_t)h.n_v_head * h.head_dim;
  if (qs)
    require_view(h.q, qs * h.tokens * 4, op, "q"),
        require_view(h.q_out, qs * h.tokens * 4, op, "q_out");
  if (ks)
    require_view(h.k, ks * h.tokens * 4, op, "k"),
        require_view(h.k_out, ks * h.tokens * 4, op, "k_out");
  if (vs)
    require_view(h.v, vs * h.tokens * 4, op, "v"),
        require_view(h.v_out, vs * h.tokens * 4, op, "v_out");
  for (const View* w : {&h.wq, &h.wk, &h.wv}) {
    if (w->buffer) require_view(*w, (size_t)h.head_dim * 4, op, "weight");
  }
  require_view(h.pos, (size_t)h.tokens * 4, op, "positions");
  const bool roped = (qs && h.rope_q) || (ks && h.rope_k);
  if (roped) require_view(h.inv_freq, (size_t)h.head_dim / 2 * 4, op, "inv_freq");
  const bool store = h.kv_type != TensorType::F32;
  if (store) {
    require(h.kv_type == TensorType::F16 || h.kv_type == TensorType::Q8_0, op,
            "KV type must be F16 or Q8_0");
    require(h.head_dim % 32 == 0 && row_size(h.kv_type, h.head_dim) % 4 == 0, op,
            "cache rows must be whole blocks and a multiple of 4 bytes");
    require(h.stride_slot % 4 == 0 && h.stride_head % 4 == 0, op,
            "cache strides must be multiples of 4 bytes");
    require_view(h.slots, (size_t)h.tokens * 4, op, "slots");
    if (ks) require(h.k_cache.buffer != nullptr, op, "k_cache is missing");
    if (vs) require(h.v_cache.buffer != nullptr, op, "v_cache is missing");
  }
  const uint32_t half = h.head_dim / 2;
  uint32_t wg = 32;
  while (wg < 256 && wg * 2 <= half) wg *= 2;
  const uint32_t spec[] = {wg, ceil_div(half, wg),
                           store ? (h.kv_type == TensorType::F16 ? 1u : 2u) : 0u};
  const Pipeline& p =
      rec.device().pipeline(reduction_module(rec.device(), "head_norm_rope"), spec, 14, 52);
  const uint32_t heads = h.n_q_head + h.n_k_head + h.n_v_head;
  if (heads == 0) return;
  const Grid g = fold((uint64_t)h.tokens * heads);
  const uint32_t flags = (qs && h.wq.buffer ? 1u : 0u) | (ks && h.wk.buffer ? 2u : 0u) |
                         (vs && h.wv.buffer ? 4u : 0u) | (qs && h.rope_q ? 8u : 0u) |
                         (ks && h.rope_k ? 16u : 0u);
  struct {
    uint32_t tokens, head_dim, nq, nk, nv, qst, kst, vst, flags, gx;
    float eps;
    uint32_t stride_slot, stride_head;
  } push{h.tokens,     h.head_dim,    h.n_q_head,   h.n_k_head, h.n_v_head,
         (uint32_t)qs, (uint32_t)ks,  (uint32_t)vs, flags,      g.x,
         h.eps,        h.stride_slot, h.stride_head};
  static_assert(sizeof push == 52);
  // Absent parts and weights are bound to the positions (read-only, never read for them).
  const View& d = h.pos;
  auto in = [&](const View& v, bool use) { return Arg{use ? v : d, false}; };
  auto out = [&](const View& v, bool use) { return use ? Arg{v, true} : Arg{d, false}; };
  const Arg args[] = {in(h.q, qs),
                      in(h.k, ks),
                      in(h.v, vs),
                      in(h.wq, flags & 1u),
                      in(h.wk, flags & 2u),
                      in(h.wv, flags & 4u),
                      {h.pos, false},
                      in(h.inv_freq, roped),
                      out(h.q_out, qs),
                      out(h.k_out, ks),
                      out(h.v_out, vs),
                      in(h.slots, store),
                      out(h.k_cache, store && ks),
                      out(h.v_cache, store && vs)};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

void rms_norm(Recorder& rec, View x, View w, View y, uint32_t n, uint32_t rows, float eps) {
  require_view(x, (size_t)n * rows * 4, "rms_norm", "x");
  require_view(y, (size_t)n * rows * 4, "rms_norm", "y");
  if (w.buffer) require_view(w, (size_t)n * 4, "rms_norm", "weight");
  // About 8 elements per thread: 32 threads for a 256-wide head, 512 for a 3840-wide row.
  uint32_t wg = 32;
  while (wg < 512 && wg * 8 < n && wg * 2 <= rec.device().info().max_workgroup_invocations) wg *= 2;
  const uint32_t spec[] = {wg, w.buffer ? 1u : 0u};
  const Pipeline& p =
      rec.device().pipeline(reduction_module(rec.device(), "rms_norm"), spec, 3, 16);
  const Grid g = fold(rows);
  struct {
    uint32_t n, rows, gx;
    float eps;
  } push{n, rows, g.x, eps};
  const Arg args[] = {{x, false}, {or_dummy(w, x), false}, {y, true}};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

void layer_norm(Recorder& rec, View x, View w, View b, View y, uint32_t n, uint32_t rows,
                float eps) {
  require_view(x, (size_t)n * rows * 4, "layer_norm", "x");
  require_view(y, (size_t)n * rows * 4, "layer_norm", "y");
  if (w.buffer) require_view(w, (size_t)n * 4, "layer_norm", "weight");
  if (b.buffer) require_view(b, (size_t)n * 4, "layer_norm", "bias");
  const uint32_t spec[] = {128, w.buffer ? 1u : 0u, b.buffer ? 1u : 0u};
  const Pipeline& p =
      rec.device().pipeline(reduction_module(rec.device(), "layer_norm"), spec, 4, 16);
  const Grid g = fold(rows);
  struct {
    uint32_t n, rows, gx;
    float eps;
  } push{n, rows, g.x, eps};
  const Arg args[] = {{x, false}, {or_dummy(w, x), false}, {or_dummy(b, x), false}, {y, true}};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

void softmax(Recorder& rec, View x, View y, uint32_t n, uint32_t rows) {
  require(n >= 1, "softmax", "n = 0");
  require_view(x, (size_t)n * rows * 4, "softmax", "x");
  require_view(y, (size_t)n * rows * 4, "softmax", "y");
  const uint32_t spec[] = {128};
  const Pipeline& p = rec.device().pipeline(reduction_module(rec.device(), "softmax"), spec, 2, 12);
  const Grid g = fold(rows);
  const uint32_t push[] = {n, rows, g.x};
  const Arg args[] = {{x, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, g.x, g.y);
}

void argmax(Recorder& rec, View x, View y, uint32_t n, uint32_t rows) {
  require(n >= 1, "argmax", "n = 0");
  require(rows <= 65535, "argmax", "more than 65535 rows");
  require_view(x, (size_t)n * rows * 4, "argmax", "x");
  require_view(y, (size_t)rows * 4, "argmax", "y");
  const uint32_t spec[] = {256};
  const Pipeline& p = rec.device().pipeline("argmax", spec, 2, 8);
  const uint32_t push[] = {n, rows};
  const Arg args[] = {{x, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, rows);
}

void rope(Recorder& rec, View x, View pos, View inv_freq, View y, uint32_t tokens, uint32_t heads,
          uint32_t head_dim, bool neox, uint32_t x_stride_token, uint32_t y_stride_token) {
  if (!x_stride_token) x_stride_token = heads * head_dim;
  if (!y_stride_token) y_stride_token = heads * head_dim;
  require(head_dim % 2 == 0, "rope", "odd head_dim");
  require_view(x, ((size_t)(tokens - 1) * x_stride_token + heads * head_dim) * 4, "rope", "x");
  require_view(y, ((size_t)(tokens - 1) * y_stride_token + heads * head_dim) * 4, "rope", "y");
  require_view(pos, (size_t)tokens * 4, "rope", "positions");
  require_view(inv_freq, (size_t)head_dim / 2 * 4, "rope", "inv_freq");
  const uint32_t spec[] = {neox ? 1u : 0u};
  const Pipeline& p = rec.device().pipeline("rope", spec, 4, 24);
  const Grid g = fold(ceil_div((uint64_t)tokens * heads * (head_dim / 2), 64));
  const uint32_t push[] = {tokens, heads, head_dim, x_stride_token, y_stride_token, g.x};
  const Arg args[] = {{x, false}, {pos, false}, {inv_freq, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, g.x, g.y);
}

void geglu(Recorder& rec, View gate, View up, View y, uint32_t n, uint32_t rows,
           uint32_t gate_stride, uint32_t up_stride, uint32_t y_stride) {
  if (!gate_stride) gate_stride = n;
  if (!up_stride) up_stride = n;
  if (!y_stride) y_stride = n;
  require_view(gate, ((size_t)(rows - 1) * gate_stride + n) * 4, "geglu", "gate");
  require_view(up, ((size_t)(rows - 1) * up_stride + n) * 4, "geglu", "up");
  require_view(y, ((size_t)(rows - 1) * y_stride + n) * 4, "geglu", "y");
  const Pipeline& p = rec.device().pipeline("glu", {}, 3, 24);
  const Grid g = fold(ceil_div((uint64_t)n * rows, 256));
  const uint32_t push[] = {n, rows, gate_stride, up_stride, y_stride, g.x};
  const Arg args[] = {{gate, false}, {up, false}, {y, true}};
  rec.dispatch(p, args, push, sizeof push, g.x, g.y);
}

void softcap(Recorder& rec, View x, View y, uint32_t n, float cap) {
  require(cap > 0, "softcap", "cap must be positive");
  require_view(x, (size_t)n * 4, "softcap", "x");
  require_view(y, (size_t)n * 4, "softcap", "y");
  const Pipeline& p = rec.device().pipeline("softcap", {}, 2, 12);
  const Grid g = fold(ceil_div(n, 256));
  struct {
    uint32_t n, gx;
    float cap;
  } push{n, g.x, cap};
  const Arg args[] = {{x, false}, {y, true}};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

static void binary(Recorder& rec, uint32_t op, View a, View b, View y, uint32_t n, uint32_t nb,
                   float s) {
  const char* name = op == 0 ? "add" : op == 1 ? "mul" : "scale";
  if (!nb) nb = n;
  require(op == 2 || (nb > 0 && n % nb == 0), name, "n is not a multiple of b's length");
  require_view(a, (size_t)n * 4, name, "a");
  if (op != 2) require_view(b, (size_t)nb * 4, name, "b");
  require_view(y, (size_t)n * 4, name, "y");
  const uint32_t spec[] = {op};
  const Pipeline& p = rec.device().pipeline("binary", spec, 3, 16);
  const Grid g = fold(ceil_div(n, 256));
  struct {
    uint32_t n, nb, gx;
    float s;
  } push{n, nb, g.x, s};
  const Arg args[] = {{a, false}, {op == 2 ? a : b, false}, {y, true}};
  rec.dispatch(p, args, &push, sizeof push, g.x, g.y);
}

void add(Recorder& rec, View a, View b, View y, uint32_t n, uint32_t nb) {
  binary(rec, 0, a, b, y, n, nb, 0);
}
void mul(Recorder& rec, View a, View b, View y, uint32_t n, uint32_t nb) {
  binary(rec, 1, a, b, y, n, nb, 0);
}
void scale(Recorder& rec, View a, View y, uint32_t n, float s) {
  binary(rec, 2, a, View{}, y, n, n, s);
}

void get_rows(Recorder& rec, TensorType t, View table, View ids, View y, uint32_t n_cols,
              uint32_t tokens, float multiplier) {
  const char* suffix = format_suffix(t);
  require(suffix != nullptr, "get_rows", "no shader for type " + std::string(type_traits(t).name));
  require(n_cols % block_elems(t) == 0, "get_rows", "n_cols is not a multiple of the block size");
  require(tokens <= 65535, "get_rows", "more than 65535 tokens");
  require_view(table, row_size(t, n_cols), "get_rows", "table");
  require_view(ids, (size_t)tokens * 4, "get_rows", "ids");
  require_view(y, (size_t)tokens * n_cols * 4, "get_rows", "y");
  const Pipeline& p = rec.device().pipeline(std::string("get_rows_") + suffix, {}, 3, 16);
  struct {
    uint32_t n_cols, row_bytes, tokens;
    float multiplier;
  } push{n_cols, (uint32_t)row_size(t, n_cols), tokens, multiplier};
  const Arg args[] = {{table, false}, {ids, false}, {y, true}};
  rec.dispatch(p, args, &push, sizeof push, std::min<uint32_t>(ceil_div(n_cols / 4 + 1, 64), 64),
               tokens);
}

double read_bandwidth_gbs(Device& dev, size_t bytes, int reps) {
  bytes = std::min<size_t>(bytes, dev.info().max_storage_buffer_range) & ~size_t(15);
  require(bytes >= 16, "read_bandwidth", "buffer too small");
  Buffer src = dev.create_buffer(bytes, MemoryKind::device, "the bandwidth probe");
  const uint32_t groups = 4096;
  Buffer dst = dev.create_buffer(groups * 256 * 4, MemoryKind::device, "the bandwidth probe");
  const Pipeline& p = dev.pipeline("read_bandwidth", {}, 2, 4);
  const uint32_t words = static_cast<uint32_t>(bytes / 16);
  const Arg args[] = {{View(src), false}, {View(dst), true}};
  // Several passes per submit (a barrier between them: each pass rereads the whole buffer, which
  // is far larger than any cache on a GPU), so the submit and fence latency, tens of
  // microseconds, is spread over them.
  constexpr int kPasses = 8;
  double best = 0;
  for (int r = 0; r <= reps; ++r) {  // the first pass warms up (pipeline, clocks)
    Recorder rec(dev);
    for (int i = 0; i < kPasses; ++i) {
      rec.dispatch(p, args, &words, 4, groups);
      rec.barrier();
    }
    const auto t0 = std::chrono::steady_clock::now();
    rec.submit_and_wait();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::max(best, kPasses * (double)bytes / s / 1e9);
  }
  return best;
}

}  // namespace qgemma::vk
