#include "runtime/cluster_head.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>

#include "kernels/cpu.h"
#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/cpu_backend.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "{";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "}";
}

// x[n] in the activation format of weight type `wtype` (Q8_0 / Q8_K rows quantized with the
// same routines as the drafter's other matmuls, so logits match the full head bit for bit).
const void* to_activation(TensorType wtype, const float* x, int64_t n, std::vector<uint8_t>& buf,
                          size_t* ldx) {
  const TensorType at = vec_dot_type(wtype);
  if (at == TensorType::F32) {
    *ldx = static_cast<size_t>(n) * sizeof(float);
    return x;
  }
  *ldx = row_size(at, n);
  if (buf.size() < *ldx) buf.resize(*ldx);
  if (at == TensorType::Q8_0) {
    quantize_row_q8_0(x, reinterpret_cast<block_q8_0*>(buf.data()), n);
  } else {
    quantize_row_q8_K(x, reinterpret_cast<block_q8_K*>(buf.data()), n);
  }
  return buf.data();
}

AlignedBuffer aligned_bytes(size_t n, const std::string& what) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, std::max<size_t>(64, (n + 63) / 64 * 64)));
  if (!p) throw Error("out of memory allocating " + what);
  return AlignedBuffer(p, std::free);
}

}  // namespace

DraftHeadMode parse_draft_head(const std::string& s) {
  if (s == "auto") return DraftHeadMode::Auto;
  if (s == "full") return DraftHeadMode::Full;
  if (s == "clustered") return DraftHeadMode::Clustered;
  throw Error("--draft-head '" + s + "': expected auto, full or clustered");
}

const char* draft_head_name(DraftHeadMode m) {
  switch (m) {
    case DraftHeadMode::Full:
      return "full";
    case DraftHeadMode::Clustered:
      return "clustered";
    default:
      return "auto";
  }
}

ClusterHead ClusterHead::load(const GgufFile& f, int64_t n_vocab, int64_t n_embd) {
  ClusterHead h;
  h.n_vocab = n_vocab;
  h.n_embd = n_embd;
  const GgufTensor* tc = f.find_tensor(kCentroidsTensor);
  const GgufTensor* to = f.find_tensor(kOrderingTensor);
  if (!tc && !to) return h;
  const std::string p = f.path() + ": ";
  if (!tc || !to) {
    throw Error(p + "tensor '" + (tc ? kOrderingTensor : kCentroidsTensor) +
                "' is missing (the file has '" + (tc ? kCentroidsTensor : kOrderingTensor) +
                "'; a clustered head needs both)");
  }
  if (tc->shape.size() != 2 || tc->shape[0] != n_embd || tc->shape[1] <= 0) {
    throw Error(p + "tensor '" + kCentroidsTensor + "': expected shape {" + std::to_string(n_embd) +
                ", n_clusters}, found " + shape_str(tc->shape));
  }
  const int64_t C = tc->shape[1];
  if (n_vocab % C != 0) {
    throw Error(p + "tensor '" + kCentroidsTensor + "': " + std::to_string(C) +
                " clusters do not divide the vocabulary of " + std::to_string(n_vocab) +
                " tokens (clusters must be of equal size)");
  }
  if (to->shape.size() != 1 || to->shape[0] != n_vocab) {
    throw Error(p + "tensor '" + kOrderingTensor + "': expected shape {" + std::to_string(n_vocab) +
                "}, found " + shape_str(to->shape));
  }
  if (to->type != TensorType::I32 && to->type != TensorType::I64) {
    throw Error(p + "tensor '" + kOrderingTensor + "': expected type i32 or i64, found " +
                std::string(type_traits(to->type).name));
  }
  h.centroids = load_matrix(f, kCentroidsTensor, n_embd, C);
  h.n_clusters = C;
  h.cluster_size = n_vocab / C;
  h.ordering.resize(n_vocab);
  std::vector<uint8_t> seen(n_vocab, 0);
  for (int64_t s = 0; s < n_vocab; ++s) {
    int64_t id;
    if (to->type == TensorType::I32) {
      int32_t v;
      std::memcpy(&v, to->data + 4 * s, 4);
      id = v;
    } else {
      std::memcpy(&id, to->data + 8 * s, 8);
    }
    if (id < 0 || id >= n_vocab || seen[id]) {
      throw Error(p + "tensor '" + kOrderingTensor + "': slot " + std::to_string(s) + " holds " +
                  (id < 0 || id >= n_vocab ? "token id " + std::to_string(id) + " (out of range)"
                                           : "token id " + std::to_string(id) + " again") +
                  ": not a permutation of [0, " + std::to_string(n_vocab) + ")");
    }
    seen[id] = 1;
    h.ordering[s] = static_cast<int32_t>(id);
  }
  if (auto k = f.get_int_opt(kCentroidTopKKey)) {
    if (*k < 1 || *k > C) {
      throw Error(p + "metadata key '" + kCentroidTopKKey + "': " + std::to_string(*k) +
                  " is outside [1, " + std::to_string(C) + "] (the number of clusters)");
    }
    h.top_k = static_cast<int>(*k);
  } else {
    h.top_k = static_cast<int>(std::min<int64_t>(kDefaultClusterTopK, C));
  }
  return h;
}

void select_top_clusters(const std::vector<float>& scores, int k, std::vector<int32_t>* top) {
  const int n = static_cast<int>(scores.size());
  k = std::clamp(k, 0, n);
  top->resize(n);
  std::iota(top->begin(), top->end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::partial_sort(top->begin(), top->begin() + k, top->end(), better);
  top->resize(k);
}

void cluster_head_logits(const ClusterHead& h, int top_k, const float* x, ThreadPool& pool,
                         ClusterHeadScratch& s, float* logits) {
  if (!h.present() || !h.table.data) throw Error("clustered head: not loaded");
  const int64_t C = h.n_clusters, cs = h.cluster_size, E = h.n_embd;
  top_k = static_cast<int>(std::clamp<int64_t>(top_k, 1, C));
  s.scores.resize(C);
  size_t ldc = 0;
  const void* xc = to_activation(h.centroids.type, x, E, s.act_c, &ldc);
  gemv_parallel(pool, h.centroids, xc, ldc, 1, s.scores.data());
  select_top_clusters(s.scores, top_k, &s.top);
  size_t ldt = 0;
  const void* xt = to_activation(h.table.type, x, E, s.act_t, &ldt);
  s.sel.resize(static_cast<size_t>(top_k) * cs);
  const MatmulFn fn = matmul_pick(h.table.type, 1, active_isa());
  // One task per selected cluster: its cluster_size rows are contiguous in slot order.
  pool.parallel_for(top_k, [&](int64_t i, int) {
    MatmulArgs a;
    a.w = h.table.row(int64_t{s.top[i]} * cs);
    a.x = xt;
    a.ldx = ldt;
    a.y = s.sel.data() + i * cs;
    a.ldy = cs;
    a.K = E;
    a.R = 1;
    fn(a, 0, cs);
  });
  std::fill(logits, logits + h.n_vocab, -std::numeric_limits<float>::infinity());
  for (int i = 0; i < top_k; ++i) {
    const int32_t* ids = h.ordering.data() + int64_t{s.top[i]} * cs;
    const float* v = s.sel.data() + i * cs;
    for (int64_t j = 0; j < cs; ++j) logits[ids[j]] = v[j];
  }
}

AlignedBuffer build_cluster_table(ClusterHead& h, const Matrix& emb, bool repack) {
  if (!h.present()) throw Error("clustered head: not loaded");
  if (unpacked_type(emb.type) != emb.type) {
    throw Error("clustered head: '" + emb.name + "' is already repacked");
  }
  if (emb.out != h.n_vocab || emb.in != h.n_embd) {
    throw Error("clustered head: '" + emb.name + "' is " + std::to_string(emb.out) + " x " +
                std::to_string(emb.in) + ", expected " + std::to_string(h.n_vocab) + " x " +
                std::to_string(h.n_embd));
  }
  const size_t rb = emb.row_bytes;
  const int64_t V = h.n_vocab;
  AlignedBuffer buf = aligned_bytes(rb * static_cast<size_t>(V), "the clustered head's table");
  uint8_t* dst = buf.get();
  const bool rp = repack && should_repack(emb.type, V, emb.in) && h.cluster_size % 8 == 0;
  if (!rp) {
    for (int64_t s = 0; s < V; ++s) std::memcpy(dst + s * rb, emb.row(h.ordering[s]), rb);
  } else {
    std::vector<uint8_t> tmp(8 * rb);
    for (int64_t g = 0; g < V; g += 8) {
      for (int j = 0; j < 8; ++j) std::memcpy(tmp.data() + j * rb, emb.row(h.ordering[g + j]), rb);
      repack_rows(emb.type, tmp.data(), dst + g * rb, emb.in, 0, 8);
    }
  }
  Matrix& t = h.table;
  t.name = emb.name + " (clustered order)";
  t.type = rp ? repacked_type(emb.type) : emb.type;
  t.in = emb.in;
  t.out = V;
  t.data = dst;
  t.row_bytes = rb;
  return buf;
}

// ---- balanced k-means ------------------------------------------------------------------------

namespace {

struct Pair {
  float d;
  int32_t t, c;
};

// Per token (rows of x, Q8_0, stride lx) the `T` nearest of the centroids `cent` (f32 rows,
// indices `ids` into the caller's numbering) by squared distance nrm[t] - 2 x.c + |c|^2.
// Appends (distance, token, cluster) pairs for tokens `tokens`.
void nearest(ThreadPool& pool, const std::vector<float>& cent, int64_t E,
             const std::vector<int32_t>& ids, const uint8_t* x, size_t lx,
             const std::vector<int32_t>& tokens, const std::vector<float>& nrm, int T,
             std::vector<Pair>* pairs) {
  const int64_t N = static_cast<int64_t>(ids.size());
  const int64_t R = static_cast<int64_t>(tokens.size());
  if (N == 0 || R == 0) return;
  T = static_cast<int>(std::min<int64_t>(T, N));
  // Centroid matrix in Q8_0, repacked when the kernels prefer it.
  const size_t wb = row_size(TensorType::Q8_0, E);
  AlignedBuffer plain = aligned_bytes(wb * N, "centroids");
  std::vector<float> cn(N);
  pool.parallel_range(N, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float* c = cent.data() + int64_t{ids[i]} * E;
      quantize_row(TensorType::Q8_0, c, plain.get() + i * wb, E);
      double s = 0;
      for (int64_t k = 0; k < E; ++k) s += double{c[k]} * c[k];
      cn[i] = static_cast<float>(s);
    }
  });
  Matrix w;
  w.name = "centroids";
  w.type = TensorType::Q8_0;
  w.in = E;
  w.out = N;
  w.row_bytes = wb;
  w.data = plain.get();
  AlignedBuffer packed(nullptr, std::free);
  if (should_repack(TensorType::Q8_0, N, E)) {
    packed = aligned_bytes(wb * N, "centroids");
    repack_rows(TensorType::Q8_0, plain.get(), packed.get(), E, 0, N);
    w.type = repacked_type(TensorType::Q8_0);
    w.data = packed.get();
  }
  // Token rows in chunks: gathered (when `tokens` is not the identity) into a contiguous block.
  const int64_t chunk = std::clamp<int64_t>((int64_t{8} << 20) / (4 * N), 16, 1024);
  std::vector<float> y(static_cast<size_t>(chunk) * N);
  std::vector<uint8_t> xg(chunk * lx);
  const size_t base = pairs->size();
  pairs->resize(base + static_cast<size_t>(R) * T);
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t n = std::min(chunk, R - r0);
    bool contiguous = true;
    for (int64_t i = 1; i < n && contiguous; ++i) {
      contiguous = tokens[r0 + i] == tokens[r0] + i;
    }
    const uint8_t* xs = x + static_cast<size_t>(tokens[r0]) * lx;
    if (!contiguous) {
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(xg.data() + i * lx, x + static_cast<size_t>(tokens[r0 + i]) * lx, lx);
      }
      xs = xg.data();
    }
    matmul_parallel(pool, w, xs, lx, n, y.data());
    pool.parallel_range(n, 8, [&](int64_t b, int64_t e, int) {
      std::vector<float> bd(T);
      std::vector<int32_t> bc(T);
      for (int64_t i = b; i < e; ++i) {
        const int32_t t = tokens[r0 + i];
        const float* yi = y.data() + i * N;
        std::fill(bd.begin(), bd.end(), std::numeric_limits<float>::infinity());
        std::fill(bc.begin(), bc.end(), -1);
        const float nt = nrm[t];
        for (int64_t c = 0; c < N; ++c) {
          const float d = nt - 2.0f * yi[c] + cn[c];
          if (!(d < bd[T - 1])) continue;
          int j = T - 1;
          while (j > 0 && d < bd[j - 1]) {
            bd[j] = bd[j - 1];
            bc[j] = bc[j - 1];
            --j;
          }
          bd[j] = d;
          bc[j] = static_cast<int32_t>(c);
        }
        Pair* out = pairs->data() + base + (r0 + i) * T;
        for (int j = 0; j < T; ++j) {  // bc[j] < 0 only with non-finite distances
          out[j] = bc[j] < 0 ? Pair{std::numeric_limits<float>::infinity(), t, ids[j]}
                             : Pair{std::max(bd[j], 0.0f), t, ids[bc[j]]};
        }
      }
    });
  }
}

// Greedy: pairs by increasing distance; a token takes its cluster while the cluster has room.
void greedy(std::vector<Pair>& pairs, int64_t cap, std::vector<int32_t>& assign,
            std::vector<int64_t>& fill, double* dist_sum) {
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    return a.d < b.d || (a.d == b.d && (a.t < b.t || (a.t == b.t && a.c < b.c)));
  });
  for (const Pair& p : pairs) {
    if (assign[p.t] >= 0 || fill[p.c] >= cap) continue;
    assign[p.t] = p.c;
    fill[p.c] += 1;
    *dist_sum += p.d;
  }
}

}  // namespace

Clustering cluster_embeddings(const Matrix& table, const ClusteringOptions& o, ThreadPool& pool,
                              const std::function<void(int, const Clustering&)>& progress) {
  const int64_t V = table.out, E = table.in, C = o.n_clusters;
  if (C < 1 || C > V || V % C != 0) {
    throw Error("cluster-head: " + std::to_string(C) +
                " clusters do not divide the vocabulary of " + std::to_string(V) + " tokens");
  }
  if (E % 32 != 0) {
    throw Error("cluster-head: embedding width " + std::to_string(E) +
                " is not a multiple of 32 (the int8 kernels' block)");
  }
  if (unpacked_type(table.type) != table.type) {
    throw Error("cluster-head: '" + table.name + "' is repacked; pass the file's layout");
  }
  const int64_t cs = V / C;
  Clustering out;
  out.n_clusters = C;
  out.cluster_size = cs;

  // Every token's row as a Q8_0 activation row, and its squared norm.
  const size_t lx = row_size(TensorType::Q8_0, E);
  std::vector<uint8_t> x(static_cast<size_t>(V) * lx);
  std::vector<float> nrm(V);
  pool.parallel_range(V, 64, [&](int64_t b, int64_t e, int) {
    std::vector<float> row(E);
    for (int64_t t = b; t < e; ++t) {
      dequantize_row(table.type, table.row(t), row.data(), E);
      double s = 0;
      for (float v : row) s += double{v} * v;
      nrm[t] = static_cast<float>(s);
      quantize_row(TensorType::Q8_0, row.data(), x.data() + t * lx, E);
    }
  });

  // Start: C distinct tokens (seeded shuffle) as centroids.
  std::vector<float> cent(static_cast<size_t>(C) * E);
  {
    std::vector<int32_t> perm(V);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(o.seed);
    for (int64_t i = 0; i < C; ++i) {
      std::uniform_int_distribution<int64_t> u(i, V - 1);
      std::swap(perm[i], perm[u(rng)]);
      dequantize_row(table.type, table.row(perm[i]), cent.data() + i * E, E);
    }
  }
  std::vector<int32_t> all(V), all_c(C);
  std::iota(all.begin(), all.end(), 0);
  std::iota(all_c.begin(), all_c.end(), 0);
  std::vector<int32_t> assign(V, -1), prev(V, -1);
  std::vector<int32_t> members(V);
  const int rounds = std::max(1, o.iters);
  for (int round = 0; round < rounds; ++round) {
    prev.swap(assign);
    std::fill(assign.begin(), assign.end(), -1);
    std::vector<int64_t> fill(C, 0);
    double dist = 0;
    std::vector<Pair> pairs;
    nearest(pool, cent, E, all_c, x.data(), lx, all, nrm, o.candidates, &pairs);
    greedy(pairs, cs, assign, fill, &dist);
    // Tokens whose candidates were all full: the nearest clusters with room, widening the
    // candidate lists until everything is placed (the capacities add up to V, so the round with
    // every free cluster as a candidate places all).
    for (int width = o.candidates * 2;; width *= 2) {
      std::vector<int32_t> left, free_c;
      for (int64_t t = 0; t < V; ++t) {
        if (assign[t] < 0) left.push_back(static_cast<int32_t>(t));
      }
      if (left.empty()) break;
      for (int64_t c = 0; c < C; ++c) {
        if (fill[c] < cs) free_c.push_back(static_cast<int32_t>(c));
      }
      pairs.clear();
      nearest(pool, cent, E, free_c, x.data(), lx, left, nrm,
              static_cast<int>(std::min<int64_t>(width, static_cast<int64_t>(free_c.size()))),
              &pairs);
      greedy(pairs, cs, assign, fill, &dist);
    }
    // Members by cluster (ascending token ids within a cluster), centroids = their means.
    std::vector<int64_t> at(C);
    for (int64_t c = 0; c < C; ++c) at[c] = c * cs;
    int64_t moved = 0;
    for (int64_t t = 0; t < V; ++t) {
      members[at[assign[t]]++] = static_cast<int32_t>(t);
      moved += assign[t] != prev[t];
    }
    pool.parallel_range(C, 1, [&](int64_t b, int64_t e, int) {
      std::vector<float> row(E);
      std::vector<double> sum(E);
      for (int64_t c = b; c < e; ++c) {
        std::fill(sum.begin(), sum.end(), 0.0);
        for (int64_t j = 0; j < cs; ++j) {
          dequantize_row(table.type, table.row(members[c * cs + j]), row.data(), E);
          for (int64_t k = 0; k < E; ++k) sum[k] += row[k];
        }
        for (int64_t k = 0; k < E; ++k) cent[c * E + k] = static_cast<float>(sum[k] / cs);
      }
    });
    out.mse.push_back(dist / V);
    out.moved.push_back(moved);
    out.ordering = members;
    out.centroids = cent;
    if (progress) progress(round, out);
    if (moved == 0) break;
  }
  return out;
}

void write_with_cluster_head(const GgufFile& in, const std::string& out, const Clustering& c,
                             TensorType centroid_type, int top_k) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(out, ec) && fs::equivalent(fs::path(out), fs::path(in.path()), ec)) {
    throw Error("cluster-head: the output " + out + " is the input file (it is never modified)");
  }
  const GgufTensor* emb = in.find_tensor("token_embd.weight");
  if (!emb || emb->shape.size() != 2) {
    throw Error(in.path() + ": tensor 'token_embd.weight' is missing");
  }
  const int64_t E = emb->shape[0], V = emb->shape[1], C = c.n_clusters;
  if (C <= 0 || static_cast<int64_t>(c.ordering.size()) != V ||
      static_cast<int64_t>(c.centroids.size()) != C * E) {
    throw Error("cluster-head: the clustering does not match " + in.path());
  }
  if (top_k < 1 || top_k > C) {
    throw Error("cluster-head: --top " + std::to_string(top_k) + " is outside [1, " +
                std::to_string(C) + "]");
  }
  if (E % type_traits(centroid_type).block_size != 0) {
    throw Error("cluster-head: embedding width " + std::to_string(E) +
                " is not a multiple of the " + std::string(type_traits(centroid_type).name) +
                " block size");
  }
  GgufWriter w(in.alignment());
  for (const GgufKV& kv : in.metadata()) {
    if (kv.key != kCentroidTopKKey) w.set(kv.key, kv.value);
  }
  w.set(kCentroidTopKKey, GgufValue::u32(static_cast<uint32_t>(top_k)));
  for (const GgufTensor& t : in.tensors()) {
    if (t.name == kCentroidsTensor || t.name == kOrderingTensor) continue;  // replaced
    const uint8_t* src = t.data;
    const uint64_t n = t.nbytes;
    w.add_tensor(t.name, t.type, t.shape,
                 [src, n](std::span<uint8_t> dst) { std::memcpy(dst.data(), src, n); });
  }
  const std::vector<float>* cent = &c.centroids;
  w.add_tensor(kCentroidsTensor, centroid_type, {E, C}, [=](std::span<uint8_t> dst) {
    const size_t rb = row_size(centroid_type, E);
    for (int64_t i = 0; i < C; ++i) {
      quantize_row(centroid_type, cent->data() + i * E, dst.data() + i * rb, E);
    }
  });
  const std::vector<int32_t>* ord = &c.ordering;
  w.add_tensor(kOrderingTensor, TensorType::I32, {V}, [=](std::span<uint8_t> dst) {
    std::memcpy(dst.data(), ord->data(), ord->size() * sizeof(int32_t));
  });
  w.write(out);
}

}  // namespace qgemma
