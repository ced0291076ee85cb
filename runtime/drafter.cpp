#include "runtime/drafter.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/attention/attention.h"
#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/cpu_backend.h"
#include "runtime/huge_pages.h"
#include "runtime/kv_cache.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

constexpr const char* kArch = "gemma4-assistant";

std::string key(const char* suffix) { return std::string(kArch) + "." + suffix; }

}  // namespace

DrafterConfig DrafterConfig::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != kArch) {
    throw Error(f.path() +
                ": general.architecture: expected 'gemma4-assistant' (an MTP drafter), "
                "found '" +
                arch + "'");
  }
  const std::string p = f.path() + ": ";
  DrafterConfig c;
  if (f.has("general.name")) c.name = f.get_string("general.name");
  c.n_embd = config_int(f.get_int(key("embedding_length")), p + key("embedding_length"));
  c.n_embd_backbone =
      config_int(f.get_int(key("embedding_length_out")), p + key("embedding_length_out"));
  c.n_layer = config_int(f.get_int(key("block_count")), p + key("block_count"));
  if (c.n_layer <= 0) throw Error(p + key("block_count") + " must be > 0");
  if (auto n = f.get_int_opt(key("nextn_predict_layers")); n && *n != c.n_layer) {
    throw Error(p + key("nextn_predict_layers") + " (" + std::to_string(*n) +
                ") must equal block_count (" + std::to_string(c.n_layer) + ")");
  }
  c.rms_eps = f.get_f32_opt(key("attention.layer_norm_rms_epsilon")).value_or(1e-6f);
  c.sliding_window = config_int(f.get_int(key("attention.sliding_window")), p + "sliding_window");
  c.n_ctx_train = f.get_int_opt(key("context_length")).value_or(0);
  const int hd_full = config_int(f.get_int(key("attention.key_length")), p + "key_length");
  const int hd_swa = config_int(f.get_int_opt(key("attention.key_length_swa")).value_or(hd_full),
                                p + "key_length_swa");
  const float base_full = f.get_f32_opt(key("rope.freq_base")).value_or(1000000.0f);
  const float base_swa = f.get_f32_opt(key("rope.freq_base_swa")).value_or(10000.0f);
  const auto heads = f.get_int_or_array(key("attention.head_count"), c.n_layer);
  const auto ffs = f.get_int_or_array(key("feed_forward_length"), c.n_layer);
  const std::vector<bool> sliding =
      read_sliding_pattern(f, key("attention.sliding_window_pattern"), c.n_layer);
  c.rope_freq_factors = read_rope_freq_factors(f);
  const GgufTensor* emb = f.find_tensor("token_embd.weight");
  if (!emb || emb->shape.size() != 2) throw Error(p + "tensor 'token_embd.weight' is missing");
  c.n_vocab = emb->shape[1];
  for (int i = 0; i < c.n_layer; ++i) {
    DrafterLayerConfig l;
    l.sliding = sliding[i];
    l.n_head = config_int(heads[i], p + "head_count");
    l.head_dim = l.sliding ? hd_swa : hd_full;
    l.n_ff = config_int(ffs[i], p + "feed_forward_length");
    l.rope_base = l.sliding ? base_swa : base_full;
    l.use_freq_factors = !l.sliding && !c.rope_freq_factors.empty();
    if (l.use_freq_factors && static_cast<int>(c.rope_freq_factors.size()) != l.head_dim / 2) {
      throw Error(p + "rope_freqs.weight: expected " + std::to_string(l.head_dim / 2) +
                  " factors, found " + std::to_string(c.rope_freq_factors.size()));
    }
    c.layers.push_back(l);
  }
  return c;
}

void DrafterConfig::to_gguf(GgufWriter& w) const {
  w.set("general.architecture", GgufValue::str(kArch));
  if (!name.empty()) w.set("general.name", GgufValue::str(name));
  w.set(key("embedding_length"), GgufValue::u32(n_embd));
  w.set(key("embedding_length_out"), GgufValue::u32(n_embd_backbone));
  w.set(key("block_count"), GgufValue::u32(n_layer));
  w.set(key("nextn_predict_layers"), GgufValue::u32(n_layer));
  w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(rms_eps));
  w.set(key("attention.sliding_window"), GgufValue::u32(sliding_window));
  if (n_ctx_train > 0)
    w.set(key("context_length"), GgufValue::u32(static_cast<uint32_t>(n_ctx_train)));
  int hd_full = 0, hd_swa = 0;
  float base_full = 1000000.0f, base_swa = 10000.0f;
  std::vector<GgufValue> pattern;
  for (const auto& l : layers) {
    (l.sliding ? hd_swa : hd_full) = l.head_dim;
    (l.sliding ? base_swa : base_full) = l.rope_base;
    pattern.push_back(GgufValue::boolean(l.sliding));
  }
  w.set(key("attention.key_length"), GgufValue::u32(hd_full));
  w.set(key("attention.value_length"), GgufValue::u32(hd_full));
  w.set(key("attention.key_length_swa"), GgufValue::u32(hd_swa));
  w.set(key("attention.value_length_swa"), GgufValue::u32(hd_swa));
  w.set(key("attention.head_count"), GgufValue::u32(layers.empty() ? 0 : layers[0].n_head));
  w.set(key("feed_forward_length"), GgufValue::u32(layers.empty() ? 0 : layers[0].n_ff));
  w.set(key("rope.freq_base"), GgufValue::f32(base_full));
  w.set(key("rope.freq_base_swa"), GgufValue::f32(base_swa));
  w.set(key("attention.sliding_window_pattern"),
        GgufValue::array(GgufValueType::BOOL, std::move(pattern)));
}

void DrafterConfig::check_target(const ModelConfig& t) const {
  auto fail = [](const std::string& what, int64_t drafter, int64_t target) {
    throw Error("drafter does not fit the target: " + what + " " + std::to_string(drafter) +
                " (drafter) vs " + std::to_string(target) + " (target)");
  };
  if (n_embd_backbone != t.n_embd)
    fail("backbone width (embedding_length_out)", n_embd_backbone, t.n_embd);
  if (n_vocab != t.n_vocab) fail("vocabulary", n_vocab, t.n_vocab);
  int last_swa = -1, last_full = -1;
  for (int i = 0; i < t.n_layer; ++i) (t.layers[i].sliding ? last_swa : last_full) = i;
  for (int i = 0; i < n_layer; ++i) {
    const int src = layers[i].sliding ? last_swa : last_full;
    if (src < 0) {
      throw Error(std::string("drafter layer ") + std::to_string(i) + " is " +
                  (layers[i].sliding ? "sliding" : "global") + " but the target has no such layer");
    }
    const LayerConfig& tl = t.layers[src];
    if (tl.head_dim != layers[i].head_dim)
      fail("head dim of layer " + std::to_string(i), layers[i].head_dim, tl.head_dim);
    if (layers[i].n_head % tl.n_head_kv != 0)
      fail("query heads vs target KV heads", layers[i].n_head, tl.n_head_kv);
  }
}

int64_t DrafterConfig::n_params() const {
  int64_t n = n_vocab * n_embd + 2 * int64_t{n_embd_backbone} * n_embd * 2;
  for (const auto& l : layers) {
    n += 2 * int64_t{n_embd} * l.n_head * l.head_dim + 3 * int64_t{n_embd} * l.n_ff;
  }
  return n;
}

DrafterWeights DrafterWeights::load(const GgufFile& f, const DrafterConfig& c) {
  DrafterWeights w;
  const int64_t E = c.n_embd, B = c.n_embd_backbone;
  w.token_embd = load_matrix(f, "token_embd.weight", E, c.n_vocab);
  w.output_norm = load_vector_f32(f, "output_norm.weight", E);
  w.pre_proj = load_matrix(f, "nextn.pre_projection.weight", 2 * B, E);
  w.post_proj = load_matrix(f, "nextn.post_projection.weight", E, B);
  for (int i = 0; i < c.n_layer; ++i) {
    const DrafterLayerConfig& l = c.layers[i];
    const std::string b = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t{l.n_head} * l.head_dim;
    DrafterLayerWeights lw;
    lw.attn_norm = load_vector_f32(f, b + "attn_norm.weight", E);
    lw.wq = load_matrix(f, b + "attn_q.weight", E, q);
    lw.q_norm = load_vector_f32(f, b + "attn_q_norm.weight", l.head_dim);
    lw.wo = load_matrix(f, b + "attn_output.weight", q, E);
    lw.post_attn_norm = load_vector_f32(f, b + "post_attention_norm.weight", E);
    lw.ffn_norm = load_vector_f32(f, b + "ffn_norm.weight", E);
    lw.ffn_gate = load_matrix(f, b + "ffn_gate.weight", E, l.n_ff);
    lw.ffn_up = load_matrix(f, b + "ffn_up.weight", E, l.n_ff);
    lw.ffn_down = load_matrix(f, b + "ffn_down.weight", l.n_ff, E);
    lw.post_ffn_norm = load_vector_f32(f, b + "post_ffw_norm.weight", E);
    if (f.find_tensor(b + "layer_output_scale.weight")) {
      lw.out_scale = load_vector_f32(f, b + "layer_output_scale.weight", 1)[0];
    }
    w.layers.push_back(std::move(lw));
  }
  w.cluster = ClusterHead::load(f, c.n_vocab, E);
  for (const GgufTensor& t : f.tensors()) w.nbytes += t.nbytes;
  return w;
}

std::unique_ptr<Drafter> Drafter::load(const std::string& path, bool repack,
                                       const DraftHeadOptions& head) {
  std::unique_ptr<Drafter> d(new Drafter);
  d->file_ = GgufFile::open(path);
  d->config_ = DrafterConfig::from_gguf(*d->file_);
  d->weights_ = DrafterWeights::load(*d->file_, d->config_);
  ClusterHead& ch = d->weights_.cluster;
  if (head.mode == DraftHeadMode::Clustered && !ch.present()) {
    throw Error(path + ": --draft-head clustered: the drafter has no clustered head (tensors '" +
                kCentroidsTensor + "' and '" + kOrderingTensor +
                "' are missing; `qgemma cluster-head` adds them)");
  }
  d->clustered_ = ch.present() && head.mode != DraftHeadMode::Full;
  if (d->clustered_) {
    if (head.top_k < 0 || head.top_k > ch.n_clusters) {
      throw Error("--draft-top " + std::to_string(head.top_k) + ": expected 1.." +
                  std::to_string(ch.n_clusters) + " (the drafter's clusters)");
    }
    d->top_k_ = head.top_k > 0 ? head.top_k : ch.top_k;
    // The head reads token_embd in cluster order (each cluster's rows contiguous); the
    // canonical table is then not read at all (the input embedding is the target's).
    d->repacked_.push_back(build_cluster_table(ch, d->weights_.token_embd, repack));
  }
  if (repack) {
    // The interleaved Q4_0 / Q8_0 layouts of the fastest GEMV kernels, as the target's loader.
    std::vector<Matrix*> todo = {&d->weights_.pre_proj, &d->weights_.post_proj};
    if (!d->clustered_) todo.push_back(&d->weights_.token_embd);
    if (d->clustered_) todo.push_back(&ch.centroids);
    for (DrafterLayerWeights& l : d->weights_.layers) {
      for (Matrix* m : {&l.wq, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) todo.push_back(m);
    }
    for (Matrix* m : todo) {
      if (!should_repack(m->type, m->out, m->in)) continue;
      const size_t n = m->nbytes();
      uint8_t* dst = alloc_huge(n).release();  // streamed every draft step, as the target's
      if (!dst) throw Error("out of memory repacking '" + m->name + "'");
      d->repacked_.emplace_back(dst, std::free);
      repack_rows(m->type, m->data, dst, m->in, 0, m->out);
      m->type = repacked_type(m->type);
      m->data = dst;
    }
  }
  return d;
}

Drafter::~Drafter() = default;

std::string Drafter::head_summary() const {
  const ClusterHead& ch = weights_.cluster;
  if (!clustered_) {
    return "full (" + std::to_string(config_.n_vocab) + " rows" +
           (ch.present() ? "; the file also has a clustered head" : "") + ")";
  }
  return "clustered (top " + std::to_string(top_k_) + " of " + std::to_string(ch.n_clusters) +
         " clusters x " + std::to_string(ch.cluster_size) +
         " tokens = " + std::to_string(int64_t{top_k_} * ch.cluster_size) + " rows + " +
         std::to_string(ch.n_clusters) + " centroids)";
}

DrafterRunner::DrafterRunner(const Drafter& d, const ModelConfig& tc, const ModelWeights& tw,
                             ThreadPool& pool)
    : d_(d), tc_(tc), tw_(tw), pool_(pool) {
  const DrafterConfig& c = d.config();
  c.check_target(tc);
  int last_swa = -1, last_full = -1;
  for (int i = 0; i < tc.n_layer; ++i) (tc.layers[i].sliding ? last_swa : last_full) = i;
  int max_q = 0, max_ff = 0, max_hd = 0;
  for (const DrafterLayerConfig& l : c.layers) {
    source_.push_back(l.sliding ? last_swa : last_full);
    std::vector<float> inv(l.head_dim / 2);
    rope_inv_freq(inv.data(), l.head_dim / 2, l.rope_base, l.head_dim, l.head_dim / 2,
                  l.use_freq_factors ? c.rope_freq_factors.data() : nullptr);
    inv_freq_.push_back(std::move(inv));
    max_q = std::max(max_q, l.n_head * l.head_dim);
    max_ff = std::max(max_ff, l.n_ff);
    max_hd = std::max(max_hd, l.head_dim);
  }
  xh_.resize(2 * c.n_embd_backbone);
  for (auto* v : {&cur_, &a_, &o_, &h_, &normed_}) v->resize(c.n_embd);
  q_.resize(max_q);
  attn_.resize(max_q);
  f_.resize(max_ff);
  gate_.resize(max_ff);
  up_.resize(max_ff);
  cs_.resize(max_hd);
  partials_.resize(pool.size());
}

void DrafterRunner::matmul(const Matrix& w, const float* x, float* y) {
  const TensorType at = vec_dot_type(w.type);
  const void* xa = x;
  size_t ldx = static_cast<size_t>(w.in) * sizeof(float);
  if (at != TensorType::F32) {
    ldx = row_size(at, w.in);
    if (act_.size() < ldx) act_.resize(ldx);
    if (at == TensorType::Q8_0) {
      quantize_row_q8_0(x, reinterpret_cast<block_q8_0*>(act_.data()), w.in);
    } else {
      quantize_row_q8_K(x, reinterpret_cast<block_q8_K*>(act_.data()), w.in);
    }
    xa = act_.data();
  }
  gemv_parallel(pool_, w, xa, ldx, 1, y);
}

void DrafterRunner::attention(int il, const KvCache& kv, const float* q, int64_t pos, float* out) {
  const DrafterLayerConfig& l = d_.config().layers[il];
  const int src = source_[il];
  FlashAttnArgs a;
  kv.attention_args(src, &a);
  const int32_t qpos = static_cast<int32_t>(pos);
  a.q = q;
  a.q_stride_token = int64_t{l.n_head} * l.head_dim;
  a.q_stride_head = l.head_dim;
  a.q_pos = &qpos;
  a.n_q = 1;
  a.n_head = l.n_head;
  a.window = tc_.layers[src].sliding ? tc_.sliding_window : 0;
  a.scale = tc_.attn_scale;
  a.out = out;
  a.out_stride_token = a.q_stride_token;
  a.out_stride_head = l.head_dim;
  const int threads = pool_.size();
  if (a.n_kv == 0) {
    std::fill(out, out + a.q_stride_token, 0.0f);
    return;
  }
  if (a.n_kv_head < threads && a.n_kv >= 256 && threads > 1) {
    for (auto& p : partials_) p.resize(flash_attn_partial_floats(a));
    pool_.parallel_for(threads, [&](int64_t s, int) {
      const int64_t kv0 = a.n_kv * s / threads, kv1 = a.n_kv * (s + 1) / threads;
      flash_attn_partial(a, 0, 1, 0, l.n_head, kv0, kv1, partials_[s].data());
    });
    std::vector<const float*> parts;
    for (const auto& p : partials_) parts.push_back(p.data());
    flash_attn_combine(a, 0, 1, 0, l.n_head, parts.data(), threads);
    return;
  }
  const int group = l.n_head / a.n_kv_head;
  pool_.parallel_for(a.n_kv_head, [&](int64_t g, int) {
    flash_attn(a, 0, 1, static_cast<int>(g * group), static_cast<int>((g + 1) * group));
  });
}

void DrafterRunner::step(const KvCache& kv, int32_t token, const float* h, int64_t pos,
                         float* logits, float* h_next) {
  const DrafterConfig& c = d_.config();
  const DrafterWeights& w = d_.weights();
  const int64_t E = c.n_embd, B = c.n_embd_backbone;
  if (token < 0 || token >= tc_.n_vocab) {
    throw Error("drafter: token id " + std::to_string(token) + " outside the vocabulary");
  }
  // [target_embed(token) * sqrt(E_target) ; h]
  embedding_row(tw_.token_embd, token, xh_.data(), tc_.embed_scale, tmp_);
  std::memcpy(xh_.data() + B, h, B * sizeof(float));
  matmul(w.pre_proj, xh_.data(), cur_.data());
  for (int il = 0; il < c.n_layer; ++il) {
    const DrafterLayerConfig& l = c.layers[il];
    const DrafterLayerWeights& lw = w.layers[il];
    const int64_t hd = l.head_dim, qd = int64_t{l.n_head} * hd;
    rmsnorm_f32(cur_.data(), lw.attn_norm.data(), a_.data(), E, c.rms_eps);
    matmul(lw.wq, a_.data(), q_.data());
    rmsnorm_heads_f32(q_.data(), lw.q_norm.data(), q_.data(), l.n_head, hd, c.rms_eps);
    float* cs = cs_.data();
    float* sn = cs + hd / 2;
    rope_angles_f32(inv_freq_[il].data(), hd / 2, static_cast<float>(pos), cs, sn);
    rope_neox_f32(q_.data(), l.n_head, hd, cs, sn);
    attention(il, kv, q_.data(), pos, attn_.data());
    matmul(lw.wo, attn_.data(), o_.data());
    (void)qd;
    rmsnorm_f32(o_.data(), lw.post_attn_norm.data(), o_.data(), E, c.rms_eps);
    add_f32(cur_.data(), o_.data(), h_.data(), E);
    rmsnorm_f32(h_.data(), lw.ffn_norm.data(), a_.data(), E, c.rms_eps);
    matmul(lw.ffn_gate, a_.data(), gate_.data());
    matmul(lw.ffn_up, a_.data(), up_.data());
    geglu_tanh_f32(gate_.data(), up_.data(), f_.data(), l.n_ff);
    matmul(lw.ffn_down, f_.data(), o_.data());
    rmsnorm_f32(o_.data(), lw.post_ffn_norm.data(), o_.data(), E, c.rms_eps);
    add_f32(h_.data(), o_.data(), h_.data(), E);
    scale_f32(h_.data(), lw.out_scale, cur_.data(), E);
  }
  rmsnorm_f32(cur_.data(), w.output_norm.data(), normed_.data(), E, c.rms_eps);
  if (d_.clustered()) {  // the selected clusters' rows only, -inf elsewhere
    cluster_head_logits(w.cluster, d_.cluster_top_k(), normed_.data(), pool_, head_scratch_,
                        logits);
  } else {
    matmul(w.token_embd, normed_.data(), logits);  // tied head, no softcap
  }
  matmul(w.post_proj, normed_.data(), h_next);
}

}  // namespace qgemma
