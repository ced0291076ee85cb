#include "runtime/vulkan/backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "loader/error.h"
#include "runtime/vulkan/ops.h"
#include "runtime/weights.h"

namespace qgemma::vk {
namespace {

TensorType plain_type(TensorType t) { return unpacked_type(t); }

View rows_view(const Buffer& arena, const MemoryPlan& plan, int t, const GraphTensor& gt) {
  return View(arena, static_cast<size_t>(plan.offset[t]) * 4,
              static_cast<size_t>(gt.nfloats()) * 4);
}

}  // namespace

VulkanBackend::VulkanBackend(Device& dev, const ModelConfig& c, int64_t n_ctx, int64_t n_batch,
                             TensorType kv_type)
    : dev_(dev), c_(c), n_ctx_(n_ctx), n_batch_(n_batch), kv_type_(kv_type) {
  if (kv_type != TensorType::F16 && kv_type != TensorType::Q8_0) {
    throw Error("Vulkan backend: KV type " + std::string(type_traits(kv_type).name) +
                " is not supported (f16 or q8_0)");
  }
  if (n_ctx <= 0 || n_batch <= 0) throw Error("Vulkan backend: context and batch must be > 0");
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerConfig& l = c.layers[i];
    if (l.n_rot != l.head_dim) {
      throw Error("Vulkan backend: partial rotary embedding (layer " + std::to_string(i) +
                  ") is not supported");
    }
    std::vector<float> inv(l.head_dim / 2);
    rope_inv_freq(inv.data(), l.head_dim / 2, l.rope_base, l.n_rot, l.n_rot / 2,
                  l.use_freq_factors ? c.rope_freq_factors.data() : nullptr);
    inv_freq_.push_back(dev.create_buffer(inv.size() * 4, MemoryKind::device, "rope frequencies"));
    dev.upload(inv_freq_.back(), 0, inv.data(), inv.size() * 4);

    KvLayer kl;
    const int64_t ring_cap = c.sliding_window + n_batch;
    kl.ring = l.sliding && ring_cap < n_ctx;
    kl.capacity = kl.ring ? ring_cap : n_ctx;
    kl.row_bytes = row_size(kv_type, l.head_dim);
    const size_t bytes = kl.row_bytes * l.n_head_kv * static_cast<size_t>(kl.capacity);
    const std::string what = "the KV cache of layer " + std::to_string(i);
    kl.k = dev.create_buffer(bytes, MemoryKind::device, what);
    kl.v = dev.create_buffer(bytes, MemoryKind::device, what);
    kl.pos_buf = dev.create_buffer(static_cast<size_t>(kl.capacity) * 4, MemoryKind::device, what);
    kl.pos.assign(kl.capacity, -1);
    dev.upload(kl.pos_buf, 0, kl.pos.data(), kl.pos.size() * 4);
    kv_.push_back(std::move(kl));
  }
}

VulkanBackend::~VulkanBackend() = default;

const Buffer& VulkanBackend::weight(const void* data, size_t bytes, const char* name) {
  auto it = weights_.find(data);
  if (it != weights_.end()) return it->second;
  Buffer b = dev_.create_buffer(bytes, MemoryKind::device, name);
  dev_.upload(b, 0, data, bytes);
  return weights_.emplace(data, std::move(b)).first->second;
}

// The GPU reads the file's layouts: matrices the CPU loader repacked (Q4_0x8, Q8_0x8, Q4_Kx8,
// Q6_Kx8) are unpacked once on upload (load with repack = false to skip both steps).
const Buffer& VulkanBackend::matrix(const Matrix& m) {
  const TensorType plain = plain_type(m.type);
  if (plain == m.type || weights_.count(m.data)) return weight(m.data, m.nbytes(), m.name.c_str());
  std::vector<uint8_t> rows(m.nbytes());
  unpack_rows(m.type, m.data, rows.data(), m.in, 0, m.out);
  Buffer b = dev_.create_buffer(rows.size(), MemoryKind::device, m.name);
  dev_.upload(b, 0, rows.data(), rows.size());
  return weights_.emplace(m.data, std::move(b)).first->second;
}

Buffer& VulkanBackend::scratch(Buffer& b, size_t bytes, const char* what) {
  if (!b || b.size() < bytes) b = dev_.create_buffer(bytes, MemoryKind::device, what);
  return b;
}

// Host-side bookkeeping of KvCache::store for every layer the graph stores to; the K/V rows
// themselves are written on the GPU by kv_store.
void VulkanBackend::update_cache_positions(Recorder& rec, const Graph& g, const int32_t* pos) {
  const int64_t T = g.n_tokens;
  if (T > n_batch_) {
    throw Error("Vulkan backend: " + std::to_string(T) + " tokens in one run, batch is " +
                std::to_string(n_batch_));
  }
  for (int64_t t = 0; t < T; ++t) {
    if (pos[t] < 0 || pos[t] >= n_ctx_) {
      throw Error("KV cache: position " + std::to_string(pos[t]) + " is outside the context of " +
                  std::to_string(n_ctx_) + " (raise --ctx)");
    }
  }
  std::vector<bool> stores(kv_.size(), false);
  for (const Node& n : g.nodes) {
    if (n.op == Op::KvStore) stores[n.layer] = true;
  }
  for (size_t i = 0; i < kv_.size(); ++i) {
    if (!stores[i]) continue;
    KvLayer& l = kv_[i];
    int64_t lo = l.capacity, hi = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = l.ring ? pos[t] % l.capacity : pos[t];
      l.pos[slot] = pos[t];
      l.used = std::max(l.used, slot + 1);
      l.newest = std::max(l.newest, pos[t]);
      lo = std::min(lo, slot), hi = std::max(hi, slot + 1);
    }
    rec.update(View(l.pos_buf, lo * 4), l.pos.data() + lo, (hi - lo) * 4);
  }
}

const float* VulkanBackend::run(const Graph& g, const MemoryPlan& plan, const int32_t* tokens,
                                const int32_t* pos) {
  const int64_t T = g.n_tokens;
  // One command buffer and one submit per run: the small uploads (cache positions, token ids,
  // slots) are recorded with vkCmdUpdateBuffer and the results copied into a host-visible
  // read-back buffer at the end.
  Recorder rec(dev_);
  if (dev_.profiling()) rec.set_profile_tag(T == 1 ? "decode" : "T=" + std::to_string(T));
  update_cache_positions(rec, g, pos);
  std::vector<int32_t> ring(T), linear(T);
  for (int64_t t = 0; t < T; ++t) {
    linear[t] = pos[t];
    ring[t] = static_cast<int32_t>(pos[t] % (c_.sliding_window + n_batch_));
  }
  const size_t tb = static_cast<size_t>(T) * 4;
  rec.update(View(scratch(tokens_, tb, "token ids")), tokens, tb);
  rec.update(View(scratch(pos_, tb, "positions")), pos, tb);
  rec.update(View(scratch(slots_ring_, tb, "cache slots")), ring.data(), tb);
  rec.update(View(scratch(slots_linear_, tb, "cache slots")), linear.data(), tb);
  scratch(arena_, static_cast<size_t>(plan.arena_floats) * 4, "activations");
  // Scratch buffers are sized before recording: one freed while recorded commands still
  // reference it would be a use-after-free on the GPU.
  size_t q8_bytes = 0;
  for (const Node& n : g.nodes) {
    if (n.op == Op::MatMul && g.tensors[n.output].rows <= 8 &&
        int_dot_supported(dev_, plain_type(n.w->type))) {
      q8_bytes =
          std::max(q8_bytes, q8_activation_bytes(static_cast<uint32_t>(n.w->in),
                                                 static_cast<uint32_t>(g.tensors[n.output].rows)));
    }
  }
  if (q8_bytes) scratch(q8_, q8_bytes, "quantized activations");

  int q8_input = -1;  // graph tensor whose quantized copy q8_ holds
  for (const Node& n : g.nodes) {
    const GraphTensor* ot = n.output >= 0 ? &g.tensors[n.output] : nullptr;
    const int64_t rows = ot ? ot->rows : 0, cols = ot ? ot->cols : 0;
    const View y = ot ? rows_view(arena_, plan, n.output, *ot) : View();
    const View x =
        n.inputs.empty() ? View() : rows_view(arena_, plan, n.inputs[0], g.tensors[n.inputs[0]]);
    const View x1 =
        n.inputs.size() > 1 ? rows_view(arena_, plan, n.inputs[1], g.tensors[n.inputs[1]]) : View();
    const uint32_t R = static_cast<uint32_t>(rows), C = static_cast<uint32_t>(cols);
    switch (n.op) {
      case Op::Embed: {
        const Matrix& w = *n.w;
        get_rows(rec, plain_type(w.type), matrix(w), tokens_, y, C, R, n.f);
        break;
      }
      case Op::RmsNorm: {
        const uint32_t group = static_cast<uint32_t>(n.group);
        const View w = n.vec ? View(weight(n.vec, group * 4, "norm weights")) : View();
        rms_norm(rec, x, w, y, group, R * (C / group), n.f);
        break;
      }
      case Op::MatMul: {
        const Matrix& w = *n.w;
        const TensorType wt = plain_type(w.type);
        if (!matmul_supported_on_gpu(wt)) {
          throw Error("Vulkan backend: no shader for " + w.name + " (type " +
                      std::string(type_traits(w.type).name) + ")");
        }
        const uint32_t K = static_cast<uint32_t>(w.in), N = static_cast<uint32_t>(w.out);
        if (R <= 8 && int_dot_supported(dev_, wt)) {
          // Integer-dot path: quantize the activations once for consecutive matmuls of the same
          // input (Q/K/V, gate/up), then one matrix-vector dispatch per weight.
          const View q8(q8_, 0, q8_activation_bytes(K, R));
          if (q8_input != n.inputs[0]) {
            quantize_q8(rec, x, q8, K, R);
            q8_input = n.inputs[0];
          }
          mul_mat_vec_q8(rec, wt, matrix(w), q8, y, N, K, R);
        } else {
          matmul(rec, wt, matrix(w), x, y, N, K, R, View());
        }
        break;
      }
      case Op::Rope: {
        const uint32_t group = static_cast<uint32_t>(n.group);
        rope(rec, x, pos_, inv_freq_[n.layer], y, R, C / group, group, true);
        break;
      }
      case Op::KvStore: {
        const LayerConfig& l = c_.layers[n.layer];
        KvLayer& kl = kv_[n.layer];
        const uint32_t Tin = static_cast<uint32_t>(g.tensors[n.inputs[0]].rows);
        const Buffer& slots = kl.ring ? slots_ring_ : slots_linear_;
        const uint32_t ss = static_cast<uint32_t>(kl.row_bytes);
        const uint32_t sh = static_cast<uint32_t>(kl.row_bytes * kl.capacity);
        kv_store(rec, kv_type_, x, slots, kl.k, Tin, l.n_head_kv, l.head_dim, ss, sh);
        kv_store(rec, kv_type_, x1, slots, kl.v, Tin, l.n_head_kv, l.head_dim, ss, sh);
        break;
      }
      case Op::Attention: {
        const LayerConfig& l = c_.layers[n.layer];
        const KvLayer& kl = kv_[n.layer];
        FlashAttnParams a;
        a.q = x;
        a.q_stride_token = static_cast<uint32_t>(l.n_head * l.head_dim);
        a.q_stride_head = l.head_dim;
        a.q_pos = pos_;
        a.n_q = R;
        a.n_head = l.n_head;
        a.n_kv_head = l.n_head_kv;
        a.head_dim = l.head_dim;
        a.kv_type = kv_type_;
        a.k = kl.k;
        a.v = kl.v;
        a.k_stride_slot = a.v_stride_slot = static_cast<uint32_t>(kl.row_bytes);
        a.k_stride_head = a.v_stride_head = static_cast<uint32_t>(kl.row_bytes * kl.capacity);
        a.kv_pos = kl.pos_buf;
        a.n_kv = static_cast<uint32_t>(kl.used);
        a.window = l.sliding ? c_.sliding_window : 0;
        a.scale = c_.attn_scale;
        a.out = y;
        a.out_stride_token = a.q_stride_token;
        a.out_stride_head = l.head_dim;
        flash_attn(rec, a);
        break;
      }
      case Op::Add:
        add(rec, x, x1, y, R * C);
        break;
      case Op::Scale:
        scale(rec, x, y, R * C, n.f);
        break;
      case Op::GeluGlu:
        geglu(rec, x, x1, y, C, R);
        break;
      case Op::Softcap:
        softcap(rec, x, y, R * C, n.f);
        break;
      case Op::LastRows: {
        const int64_t in_rows = g.tensors[n.inputs[0]].rows;
        const View src(arena_,
                       static_cast<size_t>(plan.offset[n.inputs[0]] + (in_rows - rows) * cols) * 4);
        rec.copy(src, y, static_cast<size_t>(rows * cols) * 4);
        break;
      }
      default:
        throw Error("Vulkan backend: graph op " + std::to_string(static_cast<int>(n.op)) +
                    " has no shader yet");
    }
  }
  last_dispatches_ = rec.dispatches();
  last_barriers_ = rec.barriers();
  const size_t out_bytes = static_cast<size_t>(g.tensors[g.output].nfloats()) * 4;
  const size_t hidden_bytes =
      g.hidden >= 0 ? static_cast<size_t>(g.tensors[g.hidden].nfloats()) * 4 : 0;
  if (!readback_ || readback_.size() < out_bytes + hidden_bytes) {
    readback_ = dev_.create_buffer(out_bytes + hidden_bytes, MemoryKind::host, "results");
  }
  rec.copy(View(arena_, static_cast<size_t>(plan.offset[g.output]) * 4), View(readback_, 0),
           out_bytes);
  if (hidden_bytes) {
    rec.copy(View(arena_, static_cast<size_t>(plan.offset[g.hidden]) * 4),
             View(readback_, out_bytes), hidden_bytes);
  }
  rec.submit_and_wait();
  const char* mapped = static_cast<const char*>(readback_.mapped());
  out_.resize(out_bytes / 4);
  std::memcpy(out_.data(), mapped, out_bytes);
  hidden_.resize(hidden_bytes / 4);
  if (hidden_bytes) std::memcpy(hidden_.data(), mapped + out_bytes, hidden_bytes);
  return out_.data();
}

void VulkanBackend::crop(int64_t n) {
  for (size_t i = 0; i < kv_.size(); ++i) {
    KvLayer& l = kv_[i];
    if (l.newest < n) continue;
    if (l.ring && l.newest - n > n_batch_) {
      throw Error("KV cache: cannot crop layer " + std::to_string(i) + " back to position " +
                  std::to_string(n) + ": its ring keeps only the last " + std::to_string(n_batch_) +
                  " positions beyond the window");
    }
    for (int32_t& p : l.pos) {
      if (p >= n) p = -1;
    }
    l.newest = static_cast<int32_t>(n) - 1;
    if (!l.ring) l.used = std::min<int64_t>(l.used, n);
    dev_.upload(l.pos_buf, 0, l.pos.data(), l.pos.size() * 4);
  }
}

void VulkanBackend::clear() {
  for (KvLayer& l : kv_) {
    std::fill(l.pos.begin(), l.pos.end(), -1);
    l.used = 0;
    l.newest = -1;
    dev_.upload(l.pos_buf, 0, l.pos.data(), l.pos.size() * 4);
  }
}

}  // namespace qgemma::vk
