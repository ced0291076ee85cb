// gemv_parallel (runtime/cpu_backend.h): the decode-time matmul split across the thread pool in
// several dynamically claimed tasks per thread. Every output row is written once and agrees with
// the scalar reference, for plain and repacked weight formats, ragged row counts (not multiples
// of the 16/32-row task boundaries), 1..8 activation rows and 1..3 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "kernels/quant/quant.h"
#include "runtime/cpu_backend.h"
#include "runtime/threadpool.h"
#include "runtime/weights.h"

namespace qgemma {
namespace {

struct Weights {
  std::vector<uint8_t> plain, packed;
  Matrix m;  // packed when the active ISA has a repacked kernel, else plain
};

Weights make_weights(TensorType t, int64_t N, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  Weights w;
  const size_t rs = row_size(t, K);
  w.plain.resize(rs * N);
  std::vector<float> f(K);
  for (int64_t n = 0; n < N; ++n) {
    for (float& v : f) v = d(rng);
    quantize_row(t, f.data(), w.plain.data() + n * rs, K);
  }
  w.m.name = "w";
  w.m.type = t;
  w.m.in = K;
  w.m.out = N;
  w.m.row_bytes = rs;
  w.m.data = w.plain.data();
  if (should_repack(t, N, K)) {
    w.packed.resize(w.plain.size());
    repack_rows(t, w.plain.data(), w.packed.data(), K, 0, N);
    w.m.type = repacked_type(t);
    w.m.data = w.packed.data();
  }
  return w;
}

TEST(GemvParallel, MatchesTheReferenceOnRaggedShapes) {
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::F32}) {
      // N: a multiple of 8 but not of 16 or 32 (repacked tails), odd (plain), a few tasks' worth.
      for (int64_t N : {8, 40, 296, 1000, 1064}) {
        const int64_t K = 96;
        const Weights w = make_weights(t, N, K, rng);
        const TensorType at = vec_dot_type(w.m.type);
        for (int64_t R : {1, 3, 8}) {
          std::vector<float> xf(R * K);
          for (float& v : xf) v = d(rng);
          const size_t ldx = at == TensorType::F32 ? K * sizeof(float) : row_size(at, K);
          std::vector<uint8_t> xq(ldx * R);
          for (int64_t r = 0; r < R; ++r) {
            if (at == TensorType::F32) {
              std::memcpy(xq.data() + r * ldx, xf.data() + r * K, K * sizeof(float));
            } else {
              quantize_row(at, xf.data() + r * K, xq.data() + r * ldx, K);
            }
          }
          std::vector<float> y(R * N, std::numeric_limits<float>::quiet_NaN()), ref(R * N);
          gemv_parallel(pool, w.m, xq.data(), ldx, R, y.data());
          MatmulArgs a;
          a.w = w.plain.data();
          a.x = xq.data();
          a.ldx = ldx;
          a.y = ref.data();
          a.ldy = N;
          a.K = K;
          a.R = R;
          matmul_ref(t, a, 0, N);
          for (int64_t i = 0; i < R * N; ++i) {
            ASSERT_FALSE(std::isnan(y[i])) << "row " << i % N << " not written";
            ASSERT_NEAR(y[i], ref[i], 1e-3f * (1.0f + std::fabs(ref[i])))
                << type_traits(t).name << " N " << N << " R " << R << " threads " << threads
                << " at " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace qgemma
