#include "runtime/vulkan/backend.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
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

using Fused = VulkanBackend::Fused;

// Readers of each tensor (the graph output and hidden state count as one more).
std::vector<int> reader_counts(const Graph& g) {
  std::vector<int> n(g.tensors.size(), 0);
  for (const Node& nd : g.nodes) {
    for (int in : nd.inputs) ++n[in];
  }
  if (g.output >= 0) ++n[g.output];
  if (g.hidden >= 0) ++n[g.hidden];
  return n;
}

// The memory planner's first fit (runtime/planner.cpp) over fused groups: every node of a
// group runs at the group's time, so a fused dispatch never writes over its own inputs.
MemoryPlan plan_groups(const Graph& g, const std::vector<Fused>& groups) {
  const int n_tensors = static_cast<int>(g.tensors.size());
  const int n_groups = static_cast<int>(groups.size());
  MemoryPlan p;
  p.offset.assign(n_tensors, -1);
  p.first.assign(n_tensors, -1);
  p.last.assign(n_tensors, -1);
  for (int gi = 0; gi < n_groups; ++gi) {
    for (int i = groups[gi].first; i < groups[gi].first + groups[gi].count; ++i) {
      const Node& n = g.nodes[i];
      if (n.output >= 0) p.first[n.output] = p.last[n.output] = gi;
      for (int in : n.inputs) p.last[in] = std::max(p.last[in], gi);
    }
  }
  if (g.output >= 0) p.last[g.output] = n_groups;
  if (g.hidden >= 0) p.last[g.hidden] = n_groups;
  constexpr int64_t kAlign = 16;  // floats
  std::map<int64_t, int64_t> live;
  std::vector<std::vector<int>> dies_at(n_groups + 1);
  for (int t = 0; t < n_tensors; ++t) {
    if (p.first[t] >= 0) dies_at[p.last[t]].push_back(t);
  }
  for (int gi = 0; gi < n_groups; ++gi) {
    for (int i = groups[gi].first; i < groups[gi].first + groups[gi].count; ++i) {
      const int out = g.nodes[i].output;
      if (out < 0) continue;
      const int64_t size = (g.tensors[out].nfloats() + kAlign - 1) / kAlign * kAlign;
      int64_t at = 0;
      for (const auto& [off, sz] : live) {
        if (off - at >= size) break;
        at = std::max(at, off + sz);
      }
      live[at] = size;
      p.offset[out] = at;
      p.arena_floats = std::max(p.arena_floats, at + size);
    }
    for (int t : dies_at[gi]) live.erase(p.offset[t]);
  }
  return p;
}

}  // namespace

// Fusion: consecutive graph nodes that one dispatch can run (see backend.h).
std::vector<VulkanBackend::Fused> VulkanBackend::fuse(const Graph& g) const {
  const std::vector<int> readers = reader_counts(g);
  const int n_nodes = static_cast<int>(g.nodes.size());
  auto node = [&](int i) -> const Node* { return i < n_nodes ? &g.nodes[i] : nullptr; };
  auto rows = [&](int t) { return g.tensors[t].rows; };
  auto cols = [&](int t) { return g.tensors[t].cols; };
  // A tensor read only by the next node of a chain (so the fused dispatch may skip it).
  auto only_reader = [&](int t) { return readers[t] == 1; };
  auto int_dot_mm = [&](const Node* n, int input) {
    return n && n->op == Op::MatMul && n->inputs[0] == input && rows(n->output) <= 8 &&
           int_dot_supported(dev_, plain_type(n->w->type)) && n->w->in % 32 == 0;
  };
  std::vector<Fused> out;
  for (int i = 0; i < n_nodes;) {
    const Node& n = g.nodes[i];
    Fused f;
    f.first = i;
    f.count = 1;
    if (!fusion_) {
      out.push_back(f);
      ++i;
      continue;
    }
    // Norm chain: RmsNorm [Add] [Scale] [RmsNorm] [-> Q8 for the next int-dot matmuls].
    if (n.op == Op::RmsNorm && n.group == cols(n.output) &&
        norm_chain_supported(dev_, static_cast<uint32_t>(n.group))) {
      int cur = n.output, j = i + 1;
      f.kind = Fused::NormChain;
      f.norm1 = i;
      const Node* m = node(j);
      if (m && m->op == Op::Add && only_reader(cur) &&
          (m->inputs[0] == cur) != (m->inputs[1] == cur)) {
        f.add = j++;
        cur = m->output;
        m = node(j);
      }
      if (m && m->op == Op::Scale && m->inputs[0] == cur && only_reader(cur)) {
        f.scale = j++;
        cur = m->output;
        m = node(j);
      }
      if (m && m->op == Op::RmsNorm && m->inputs[0] == cur && m->group == cols(cur) && f.add >= 0) {
        f.norm2 = j++;
        cur = m->output;
        m = node(j);
      }
      f.q8 = int_dot_mm(m, cur) && cols(cur) % 32 == 0;
      f.count = j - i;
      if (f.count == 1 && !f.q8) f.kind = Fused::Single;
      out.push_back(f);
      i = j;
      continue;
    }
    // Per-head norms (+ RoPE) of up to three parts (Q, K, V): RmsNorm per head [Rope].
    if (n.op == Op::RmsNorm && n.group < cols(n.output) && cols(n.output) % n.group == 0) {
      int j = i;
      std::vector<int> outs;
      while (f.parts < 3) {
        const Node* m = node(j);
        if (!m || m->op != Op::RmsNorm || m->group != n.group || m->f != n.f ||
            rows(m->output) != rows(n.output) || cols(m->output) % m->group != 0)
          break;
        if (std::find(outs.begin(), outs.end(), m->inputs[0]) != outs.end()) break;
        const Node* r = node(j + 1);
        const bool roped = r && r->op == Op::Rope && r->inputs[0] == m->output &&
                           r->group == m->group && only_reader(m->output) &&
                           (f.rope_layer < 0 || r->layer == f.rope_layer);
        if (roped && f.parts == 2) break;  // the shader ropes only the first two parts
        f.part_norm[f.parts] = j;
        f.part_rope[f.parts] = roped ? j + 1 : -1;
        if (roped) f.rope_layer = r->layer;
        outs.push_back(m->output);
        if (roped) outs.push_back(r->output);
        ++f.parts;
        j += roped ? 2 : 1;
      }
      // The K/V cache store of the last two parts' outputs, in the same dispatch.
      const Node* kv = node(j);
      if (f.parts == 3 && kv && kv->op == Op::KvStore && n.group % 32 == 0 &&
          row_size(kv_type_, n.group) % 4 == 0) {
        const auto part_out = [&](int p) {
          return f.part_rope[p] >= 0 ? g.nodes[f.part_rope[p]].output
                                     : g.nodes[f.part_norm[p]].output;
        };
        if (kv->inputs[0] == part_out(1) && kv->inputs[1] == part_out(2) &&
            rows(kv->inputs[0]) == rows(n.output)) {
          f.kv_store = j++;
        }
      }
      if (j - i > 1) {
        f.kind = Fused::HeadNorm;
        f.count = j - i;
        out.push_back(f);
        i = j;
        continue;
      }
    }
    // Matrix-vectors of one input in one dispatch (Q/K/V, gate/up [+ GeGLU]).
    if (!n.inputs.empty() && int_dot_mm(&n, n.inputs[0])) {
      int j = i + 1;
      f.mm[0] = i;
      f.n_mm = 1;
      while (f.n_mm < 3) {
        const Node* m = node(j);
        if (!int_dot_mm(m, n.inputs[0]) || plain_type(m->w->type) != plain_type(n.w->type) ||
            m->w->in != n.w->in)
          break;
        f.mm[f.n_mm++] = j++;
      }
      const Node* gl = node(j);
      if (f.n_mm == 2 && gl && gl->op == Op::GeluGlu) {
        const int o0 = g.nodes[f.mm[0]].output, o1 = g.nodes[f.mm[1]].output;
        const bool order = gl->inputs[0] == o0 && gl->inputs[1] == o1;
        const bool swapped = gl->inputs[0] == o1 && gl->inputs[1] == o0;
        if ((order || swapped) && only_reader(o0) && only_reader(o1) &&
            g.nodes[f.mm[0]].w->out == g.nodes[f.mm[1]].w->out) {
          if (swapped) std::swap(f.mm[0], f.mm[1]);
          f.glu = j++;
        }
      }
      if (f.n_mm > 1) {
        f.kind = Fused::MatVec;
        f.count = j - i;
        out.push_back(f);
        i = j;
        continue;
      }
    }
    // Attention whose output feeds an int-dot matmul: flash_attn also writes the Q8 copy.
    if (n.op == Op::Attention) {
      const LayerConfig& l = c_.layers[n.layer];
      f.q8 = int_dot_mm(node(i + 1), n.output) && cols(n.output) % 32 == 0 &&
             cols(n.output) == static_cast<int64_t>(l.n_head) * l.head_dim;
    }
    out.push_back(f);
    ++i;
  }
  return out;
}

VulkanBackend::VulkanBackend(Device& dev, const ModelConfig& c, int64_t n_ctx, int64_t n_batch,
                             TensorType kv_type)
    : dev_(dev), c_(c), n_ctx_(n_ctx), n_batch_(n_batch), kv_type_(kv_type) {
  if (const char* e = std::getenv("QGEMMA_VK_NO_FUSE")) fusion_ = !(*e && *e != '0');
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
// Q5_Kx8, Q6_Kx8) are unpacked once on upload (load with repack = false to skip both steps).
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

const float* VulkanBackend::run(const Graph& g, const MemoryPlan& /*caller's plan*/,
                                const int32_t* tokens, const int32_t* pos) {
  const int64_t T = g.n_tokens;
  // Fused groups of nodes and an arena plan that keeps each group's inputs and outputs apart
  // (the caller's plan, made for one node at a time, may overlap them).
  // Kept per graph (a session runs the same few graphs every step); recomputed when the graph
  // at that address is not the one seen before (its signature differs).
  const auto t_fuse = std::chrono::steady_clock::now();
  std::vector<uint64_t> sig;
  sig.reserve(g.nodes.size() * 6 + g.tensors.size() + 8);
  sig.insert(sig.end(),
             {static_cast<uint64_t>(g.n_tokens), g.tensors.size(), static_cast<uint64_t>(g.output),
              static_cast<uint64_t>(g.hidden), fusion_ ? 1u : 0u});
  for (const GraphTensor& t : g.tensors)
    sig.push_back(static_cast<uint64_t>(t.rows) ^ (static_cast<uint64_t>(t.cols) << 24));
  for (const Node& n : g.nodes) {
    uint32_t fb;
    std::memcpy(&fb, &n.f, 4);
    sig.insert(sig.end(), {static_cast<uint64_t>(n.op) | (uint64_t(uint32_t(n.layer)) << 8) |
                               (uint64_t(fb) << 32),
                           static_cast<uint64_t>(n.output) ^ (uint64_t(n.group) << 32),
                           reinterpret_cast<uintptr_t>(n.w), reinterpret_cast<uintptr_t>(n.vec)});
    for (int in : n.inputs) sig.push_back(static_cast<uint64_t>(in));
    sig.push_back(~0ull);
  }
  auto cached = plans_.find(&g);
  if (cached == plans_.end() || cached->second.sig != sig) {
    if (plans_.size() >= 16) plans_.clear();
    std::vector<Fused> fused = fuse(g);
    MemoryPlan p = plan_groups(g, fused);
    cached = plans_.insert_or_assign(&g, CachedPlan{std::move(sig), std::move(fused), std::move(p)})
                 .first;
  }
  const std::vector<Fused>& groups = cached->second.groups;
  const MemoryPlan& plan = cached->second.plan;
  const double fuse_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_fuse).count();
  // One command buffer and one submit per run: the small uploads (cache positions, token ids,
  // slots) are recorded with vkCmdUpdateBuffer and the results copied into a host-visible
  // read-back buffer at the end.
  Recorder rec(dev_);
  const std::string tag = T == 1 ? "decode" : "T=" + std::to_string(T);
  if (dev_.profiling()) rec.set_profile_tag(tag);
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
    // Refuse a weight format no shader reads (e.g. Q3_K) before anything is recorded.
    if ((n.op == Op::MatMul || n.op == Op::Embed) &&
        !matmul_supported_on_gpu(plain_type(n.w->type))) {
      throw Error("Vulkan backend: no shader reads " + n.w->name + " (type " +
                  std::string(type_traits(n.w->type).name) + "); use --backend cpu");
    }
    const bool decode = n.op == Op::MatMul && g.tensors[n.output].rows <= 8;
    if (n.op == Op::MatMul && (decode ? int_dot_supported(dev_, plain_type(n.w->type))
                                      : mm_int_dot_enabled(dev_, plain_type(n.w->type)))) {
      q8_bytes =
          std::max(q8_bytes, q8_activation_bytes(static_cast<uint32_t>(n.w->in),
                                                 static_cast<uint32_t>(g.tensors[n.output].rows)));
    }
  }
  if (q8_bytes) scratch(q8_, q8_bytes, "quantized activations");
  // Split-KV partial states of the attention nodes (decoding over a long cache; flash_attn
  // picks the same split count from the same sizes).
  size_t part_bytes = 0;
  for (const Node& n : g.nodes) {
    if (n.op != Op::Attention) continue;
    const LayerConfig& l = c_.layers[n.layer];
    const auto R = static_cast<uint32_t>(g.tensors[n.output].rows);
    const uint32_t splits =
        flash_attn_splits(R, l.n_head, static_cast<uint32_t>(kv_[n.layer].used));
    if (splits > 1) {
      part_bytes = std::max(part_bytes, flash_attn_partial_bytes(R, l.n_head, l.head_dim, splits));
    }
  }
  if (part_bytes) scratch(fa_part_, part_bytes, "attention partials");

  auto tview = [&](int t) { return rows_view(arena_, plan, t, g.tensors[t]); };
  int q8_input = -1;  // graph tensor whose quantized copy q8_ holds
  // The quantized copy of tensor `t` (K columns of R rows) in q8_, made unless already there.
  auto quantized = [&](int t, uint32_t K, uint32_t R) {
    const View q8(q8_, 0, q8_activation_bytes(K, R));
    if (q8_input != t) {
      quantize_q8(rec, tview(t), q8, K, R);
      q8_input = t;
    }
    return q8;
  };
  auto single = [&](const Node& n, bool q8_out) {
    const GraphTensor* ot = n.output >= 0 ? &g.tensors[n.output] : nullptr;
    const int64_t rows = ot ? ot->rows : 0, cols = ot ? ot->cols : 0;
    const View y = ot ? tview(n.output) : View();
    const View x = n.inputs.empty() ? View() : tview(n.inputs[0]);
    const View x1 = n.inputs.size() > 1 ? tview(n.inputs[1]) : View();
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
          mul_mat_vec_q8(rec, wt, matrix(w), quantized(n.inputs[0], K, R), y, N, K, R);
        } else if (R > 8 && mm_int_dot_enabled(dev_, wt)) {
          // Prefill: the same shared quantization, then the tiled integer-dot matmul.
          mul_mm_q8(rec, wt, matrix(w), quantized(n.inputs[0], K, R), y, N, K, R);
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
      case Op::KvStore: {  // K and V in one dispatch
        const LayerConfig& l = c_.layers[n.layer];
        KvLayer& kl = kv_[n.layer];
        const uint32_t Tin = static_cast<uint32_t>(g.tensors[n.inputs[0]].rows);
        const Buffer& slots = kl.ring ? slots_ring_ : slots_linear_;
        const uint32_t ss = static_cast<uint32_t>(kl.row_bytes);
        const uint32_t sh = static_cast<uint32_t>(kl.row_bytes * kl.capacity);
        if (fusion_) {
          kv_store(rec, kv_type_, x, slots, kl.k, Tin, l.n_head_kv, l.head_dim, ss, sh, 0, x1,
                   kl.v);
        } else {
          kv_store(rec, kv_type_, x, slots, kl.k, Tin, l.n_head_kv, l.head_dim, ss, sh);
          kv_store(rec, kv_type_, x1, slots, kl.v, Tin, l.n_head_kv, l.head_dim, ss, sh);
        }
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
        if (q8_out) {
          a.out_q8 = View(q8_, 0, q8_activation_bytes(C, R));
          q8_input = n.output;
        }
        if (part_bytes) a.partials = fa_part_;
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
  };
  auto norm_weight = [&](const Node& n) {
    return n.vec ? View(weight(n.vec, static_cast<size_t>(n.group) * 4, "norm weights")) : View();
  };

  for (const Fused& f : groups) {
    switch (f.kind) {
      case Fused::Single:
        single(g.nodes[f.first], f.q8);
        break;
      case Fused::NormChain: {
        const Node& n1 = g.nodes[f.norm1];
        NormChain c;
        c.x = tview(n1.inputs[0]);
        c.w1 = norm_weight(n1);
        c.eps1 = n1.f;
        int cur = n1.output;
        if (f.add >= 0) {
          const Node& a = g.nodes[f.add];
          c.res = tview(a.inputs[0] == cur ? a.inputs[1] : a.inputs[0]);
          cur = a.output;
        }
        if (f.scale >= 0) {
          c.s = g.nodes[f.scale].f;
          cur = g.nodes[f.scale].output;
        }
        c.h = tview(cur);
        if (f.norm2 >= 0) {
          const Node& n2 = g.nodes[f.norm2];
          c.norm2 = true;
          c.w2 = norm_weight(n2);
          c.eps2 = n2.f;
          cur = n2.output;
          c.a = tview(cur);
        }
        c.n = static_cast<uint32_t>(g.tensors[cur].cols);
        c.rows = static_cast<uint32_t>(g.tensors[cur].rows);
        if (f.q8) {
          c.xq = View(q8_, 0, q8_activation_bytes(c.n, c.rows));
          q8_input = cur;
        }
        norm_chain(rec, c);
        break;
      }
      case Fused::HeadNorm: {
        HeadNormRope h;
        View* in[3] = {&h.q, &h.k, &h.v};
        View* w[3] = {&h.wq, &h.wk, &h.wv};
        View* outv[3] = {&h.q_out, &h.k_out, &h.v_out};
        uint32_t* heads[3] = {&h.n_q_head, &h.n_k_head, &h.n_v_head};
        bool* roped[2] = {&h.rope_q, &h.rope_k};
        for (int p = 0; p < f.parts; ++p) {
          const Node& nn = g.nodes[f.part_norm[p]];
          const int o = f.part_rope[p] >= 0 ? g.nodes[f.part_rope[p]].output : nn.output;
          *in[p] = tview(nn.inputs[0]);
          *w[p] = norm_weight(nn);
          *outv[p] = tview(o);
          *heads[p] = static_cast<uint32_t>(g.tensors[o].cols / nn.group);
          if (p < 2) *roped[p] = f.part_rope[p] >= 0;
          h.head_dim = static_cast<uint32_t>(nn.group);
          h.tokens = static_cast<uint32_t>(g.tensors[o].rows);
          h.eps = nn.f;
        }
        h.pos = View(pos_);
        if (f.rope_layer >= 0) h.inv_freq = View(inv_freq_[f.rope_layer]);
        if (f.kv_store >= 0) {
          const Node& kn = g.nodes[f.kv_store];
          KvLayer& kl = kv_[kn.layer];
          h.kv_type = kv_type_;
          h.slots = View(kl.ring ? slots_ring_ : slots_linear_);
          h.k_cache = View(kl.k);
          h.v_cache = View(kl.v);
          h.stride_slot = static_cast<uint32_t>(kl.row_bytes);
          h.stride_head = static_cast<uint32_t>(kl.row_bytes * kl.capacity);
        }
        head_norm_rope(rec, h);
        break;
      }
      case Fused::MatVec: {
        const Node& n0 = g.nodes[f.mm[0]];
        const TensorType wt = plain_type(n0.w->type);
        const uint32_t K = static_cast<uint32_t>(n0.w->in);
        const uint32_t R = static_cast<uint32_t>(g.tensors[n0.output].rows);
        View w[3], y[3];
        uint32_t M[3] = {0, 0, 0};
        for (int k = 0; k < f.n_mm; ++k) {
          const Node& nk = g.nodes[f.mm[k]];
          w[k] = View(matrix(*nk.w));
          M[k] = static_cast<uint32_t>(nk.w->out);
          y[k] = tview(nk.output);
        }
        if (f.glu >= 0) y[0] = tview(g.nodes[f.glu].output), y[1] = y[0];
        const View q8 = quantized(n0.inputs[0], K, R);
        mul_mat_vec_q8_multi(rec, wt, static_cast<uint32_t>(f.n_mm), w, M, y, q8, K, R, f.glu >= 0);
        break;
      }
    }
  }
  last_dispatches_ = rec.dispatches();
  last_barriers_ = rec.barriers();
  if (dev_.profiling()) {
    dev_.add_profile("(host) " + tag + " fuse+plan", fuse_ms);
    dev_.add_profile("(count) " + tag + " runs", 0, 1);
    dev_.add_profile("(count) " + tag + " dispatches", 0, last_dispatches_);
    dev_.add_profile("(count) " + tag + " barriers", 0, last_barriers_);
  }
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
