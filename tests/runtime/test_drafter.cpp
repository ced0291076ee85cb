// The gemma4-assistant drafter: metadata round trip, shape checks against the target, and one
// drafter step against a naive double-precision reference of the spec's math (Q-only attention
// into the target's last sliding / last global layer at a fixed position, [embed ; h]
// pre-projection, tied head, post-projection), which also shows the step writes no cache.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/ops/ops.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/drafter.h"
#include "runtime/sampling.h"
#include "runtime/session.h"
#include "runtime/synth.h"
#include "runtime/synth_drafter.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_drafter_tmp";

const Model& target() {
  static const std::unique_ptr<Model> m = [] {
    std::system(("mkdir -p " + kDir).c_str());
    const std::string p = kDir + "/tiny_f32.gguf";
    synth_write(p, SynthOptions{});
    return Model::load(p);
  }();
  return *m;
}

std::string drafter_path(const std::string& preset) {
  std::system(("mkdir -p " + kDir).c_str());
  const std::string p = kDir + "/" + preset + ".gguf";
  synth_drafter_write(p, synth_drafter_preset(preset), TensorType::F32, 5);
  return p;
}

TEST(Drafter, ConfigRoundTripAndTargetCheck) {
  const DrafterConfig want = synth_drafter_preset("tiny-assistant");
  const auto d = Drafter::load(drafter_path("tiny-assistant"));
  const DrafterConfig& c = d->config();
  EXPECT_EQ(c.n_embd, want.n_embd);
  EXPECT_EQ(c.n_embd_backbone, want.n_embd_backbone);
  EXPECT_EQ(c.n_vocab, want.n_vocab);
  ASSERT_EQ(c.n_layer, 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.layers[i].sliding, i < 3);
    EXPECT_EQ(c.layers[i].head_dim, want.layers[i].head_dim);
    EXPECT_EQ(c.layers[i].n_ff, want.layers[i].n_ff);
    EXPECT_EQ(c.layers[i].use_freq_factors, i == 3);
  }
  EXPECT_EQ(c.rope_freq_factors, want.rope_freq_factors);
  // Keys llama.cpp requires of every model file (it refused drafters without them): the
  // context length (the target preset's) and a tokenizer.
  EXPECT_EQ(c.n_ctx_train, synth_preset("tiny").n_ctx_train);
  EXPECT_GT(c.n_ctx_train, 0);
  {
    const auto f = GgufFile::open(drafter_path("tiny-assistant"));
    EXPECT_TRUE(f->get_int_opt("gemma4-assistant.context_length").has_value());
    EXPECT_NE(f->find("tokenizer.ggml.model"), nullptr);
  }
  EXPECT_NO_THROW(c.check_target(target().config()));
  // A drafter for another target is refused with both widths named.
  const auto small = Drafter::load(drafter_path("small-assistant"));
  try {
    small->config().check_target(target().config());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("512"), std::string::npos) << e.what();
  }
  // The target loader refuses a drafter file, naming the architecture.
  EXPECT_THROW(Model::load(drafter_path("tiny-assistant")), Error);
  // 12b-assistant preset: the real drafter's shapes (~423M parameters with the embedding).
  const DrafterConfig big = synth_drafter_preset("12b-assistant");
  EXPECT_EQ(big.n_embd, 1024);
  EXPECT_EQ(big.n_embd_backbone, 3840);
  EXPECT_NEAR(static_cast<double>(big.n_params()), 423e6, 40e6);
}

// ---- naive reference ------------------------------------------------------------------------

std::vector<double> mat(const Matrix& w, const std::vector<double>& x) {
  std::vector<double> y(w.out);
  std::vector<float> row(w.in);
  for (int64_t r = 0; r < w.out; ++r) {
    get_row_f32(w.type, w.data, r, w.in, row.data(), 1.0f);
    double s = 0;
    for (int64_t i = 0; i < w.in; ++i) s += row[i] * x[i];
    y[r] = s;
  }
  return y;
}

void rms(std::vector<double>& x, int64_t off, int64_t n, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double inv = 1.0 / std::sqrt(ss / n + eps);
  for (int64_t i = 0; i < n; ++i) x[off + i] = x[off + i] * inv * w[i];
}

struct RefOut {
  std::vector<double> logits, h_next;
};

RefOut reference_step(const Drafter& d, const Model& t, const KvCache& kv, int32_t token,
                      const std::vector<float>& h, int64_t pos) {
  const DrafterConfig& c = d.config();
  const DrafterWeights& w = d.weights();
  const ModelConfig& tc = t.config();
  const int64_t E = c.n_embd, B = c.n_embd_backbone;
  std::vector<float> emb(B);
  get_row_f32(t.weights().token_embd.type, t.weights().token_embd.data, token, B, emb.data(), 1.0f);
  std::vector<double> xh(2 * B);
  for (int64_t i = 0; i < B; ++i) xh[i] = emb[i] * std::sqrt(static_cast<double>(tc.n_embd));
  for (int64_t i = 0; i < B; ++i) xh[B + i] = h[i];
  std::vector<double> x = mat(w.pre_proj, xh);
  int last_swa = -1, last_full = -1;
  for (int i = 0; i < tc.n_layer; ++i) (tc.layers[i].sliding ? last_swa : last_full) = i;
  for (int il = 0; il < c.n_layer; ++il) {
    const DrafterLayerConfig& l = c.layers[il];
    const DrafterLayerWeights& lw = w.layers[il];
    const int src = l.sliding ? last_swa : last_full;
    const int hd = l.head_dim;
    std::vector<double> a = x;
    rms(a, 0, E, lw.attn_norm, c.rms_eps);
    std::vector<double> q = mat(lw.wq, a);
    for (int hh = 0; hh < l.n_head; ++hh) {
      rms(q, int64_t{hh} * hd, hd, lw.q_norm, c.rms_eps);
      for (int i = 0; i < hd / 2; ++i) {
        double inv = std::pow(static_cast<double>(l.rope_base), -2.0 * i / hd);
        if (l.use_freq_factors) inv /= c.rope_freq_factors[i];
        const double ang = static_cast<double>(pos) * inv;
        double& x0 = q[int64_t{hh} * hd + i];
        double& x1 = q[int64_t{hh} * hd + i + hd / 2];
        const double r0 = x0 * std::cos(ang) - x1 * std::sin(ang);
        const double r1 = x0 * std::sin(ang) + x1 * std::cos(ang);
        x0 = r0;
        x1 = r1;
      }
    }
    // Attention over the target's cache of layer `src`, F16 rows.
    FlashAttnArgs args;
    kv.attention_args(src, &args);
    const int window = tc.layers[src].sliding ? tc.sliding_window : 0;
    const int group = l.n_head / args.n_kv_head;
    std::vector<double> att(int64_t{l.n_head} * hd, 0.0);
    std::vector<float> krow(hd), vrow(hd);
    for (int hh = 0; hh < l.n_head; ++hh) {
      const int g = hh / group;
      std::vector<double> sc;
      std::vector<int64_t> js;
      for (int64_t j = 0; j < args.n_kv; ++j) {
        const int32_t kp = args.kv_pos[j];
        if (kp < 0 || kp > pos || (window > 0 && pos - kp >= window)) continue;
        get_row_f32(
            args.k_type,
            static_cast<const char*>(args.k) + j * args.k_stride_slot + g * args.k_stride_head, 0,
            hd, krow.data(), 1.0f);
        double s = 0;
        for (int i = 0; i < hd; ++i) s += q[int64_t{hh} * hd + i] * krow[i];
        sc.push_back(s * tc.attn_scale);
        js.push_back(j);
      }
      double mx = -1e300, sum = 0;
      for (double s : sc) mx = std::max(mx, s);
      for (double& s : sc) sum += (s = std::exp(s - mx));
      for (size_t n = 0; n < js.size(); ++n) {
        get_row_f32(
            args.v_type,
            static_cast<const char*>(args.v) + js[n] * args.v_stride_slot + g * args.v_stride_head,
            0, hd, vrow.data(), 1.0f);
        for (int i = 0; i < hd; ++i) att[int64_t{hh} * hd + i] += sc[n] / sum * vrow[i];
      }
    }
    std::vector<double> o = mat(lw.wo, att);
    rms(o, 0, E, lw.post_attn_norm, c.rms_eps);
    for (int64_t i = 0; i < E; ++i) o[i] += x[i];
    std::vector<double> f = o;
    rms(f, 0, E, lw.ffn_norm, c.rms_eps);
    std::vector<double> g = mat(lw.ffn_gate, f), u = mat(lw.ffn_up, f);
    for (size_t i = 0; i < g.size(); ++i) {
      const double v = g[i];
      const double gl = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
      g[i] = gl * u[i];
    }
    std::vector<double> dn = mat(lw.ffn_down, g);
    rms(dn, 0, E, lw.post_ffn_norm, c.rms_eps);
    for (int64_t i = 0; i < E; ++i) x[i] = (o[i] + dn[i]) * lw.out_scale;
  }
  rms(x, 0, E, w.output_norm, c.rms_eps);
  return {mat(w.token_embd, x), mat(w.post_proj, x)};
}

double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  double d = 0, m = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    d = std::max(d, std::fabs(got[i] - want[i]));
    m = std::max(m, std::fabs(want[i]));
  }
  return d / m;
}

TEST(Drafter, StepMatchesNaiveReferenceAndWritesNoCache) {
  const auto d = Drafter::load(drafter_path("tiny-assistant"));
  SessionOptions so;
  so.n_ctx = 64;
  so.n_batch = 16;
  so.n_threads = 2;
  Session s(target(), so);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back((53 * i + 7) % 1000 + 2);  // > window (8)
  s.eval(prompt, 1);
  const std::vector<float> h0(s.hidden().begin(), s.hidden().end());
  ASSERT_EQ(static_cast<int64_t>(h0.size()), target().config().n_embd);
  ThreadPool pool(3);
  DrafterRunner run(*d, target().config(), target().weights(), pool);
  EXPECT_EQ(run.source_layer(0), 4);  // tiny: layers 0-4 sliding, 5 global
  EXPECT_EQ(run.source_layer(3), 5);
  std::vector<int32_t> slots_before;
  for (int l = 0; l < target().config().n_layer; ++l) {
    for (int64_t j = 0; j < s.kv_cache().capacity(l); ++j) {
      slots_before.push_back(s.kv_cache().slot_pos(l, j));
    }
  }
  std::vector<float> logits(d->config().n_vocab), h1(d->config().n_embd_backbone);
  const int64_t pos = s.n_past();
  int32_t tok = 123;
  std::vector<float> h = h0;
  for (int step = 0; step < 3; ++step) {  // chained steps at the same position
    run.step(s.kv_cache(), tok, h.data(), pos, logits.data(), h1.data());
    const RefOut ref = reference_step(*d, target(), s.kv_cache(), tok, h, pos);
    EXPECT_LT(rel_err(logits, ref.logits), 2e-4) << "step " << step;
    EXPECT_LT(rel_err(h1, ref.h_next), 2e-4) << "step " << step;
    tok = argmax(logits);
    h = h1;
  }
  std::vector<int32_t> slots_after;
  for (int l = 0; l < target().config().n_layer; ++l) {
    for (int64_t j = 0; j < s.kv_cache().capacity(l); ++j) {
      slots_after.push_back(s.kv_cache().slot_pos(l, j));
    }
  }
  EXPECT_EQ(slots_before, slots_after);
  EXPECT_EQ(s.n_past(), pos);
}

TEST(Drafter, RefusesWrongArchitectureAndMissingTensor) {
  EXPECT_THROW(Drafter::load(kDir + "/tiny_f32.gguf"), Error);
  (void)target();
  // A drafter file without its post-projection names the tensor.
  DrafterConfig c = synth_drafter_preset("tiny-assistant");
  GgufWriter w;
  c.to_gguf(w);
  std::vector<float> zeros(c.n_embd * c.n_vocab, 0.0f);
  w.add_tensor(
      "token_embd.weight", TensorType::F32, {c.n_embd, c.n_vocab},
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(zeros.data()), zeros.size() * 4));
  const std::string p = kDir + "/broken.gguf";
  w.write(p);
  try {
    Drafter::load(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("output_norm.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qgemma
