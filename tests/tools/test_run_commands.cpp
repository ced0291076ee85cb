// The model commands end to end, through the `qgemma` binary: synth, logits (file layout and
// values equal to the library's), run (greedy output reproducible), bench (-o json), and the
// memory budget refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/session.h"
#include "tools/shell_util.h"

namespace qgemma {
namespace {

const std::string& kBin = testing_util::kQgemmaBin;
const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_run_commands_tmp";

using Output = testing_util::ShellOutput;
using testing_util::sh;

class Commands : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::system(("mkdir -p " + kDir).c_str());
    model_ = kDir + "/tiny_q4_0.gguf";
    synth_ = sh(kBin + " synth -o " + model_ + " --preset tiny --type q4_0");
  }
  void SetUp() override {
    if (!std::ifstream(kBin).good()) GTEST_SKIP() << kBin << " is not built";
    ASSERT_EQ(synth_.status, 0) << synth_.out;
  }
  static std::string model_;
  static Output synth_;
};
std::string Commands::model_;
Output Commands::synth_;

TEST_F(Commands, LogitsWritesEveryPositionLikeTheLibrary) {
  const std::string out = kDir + "/logits.f32";
  const Output o = sh(kBin + " logits -m " + model_ + " --tokens 2,10,20,30,40 -o " + out);
  ASSERT_EQ(o.status, 0) << o.out;
  EXPECT_NE(o.out.find("2,10,20,30,40"), std::string::npos) << o.out;
  std::ifstream f(out, std::ios::binary | std::ios::ate);
  auto m = Model::load(model_);
  const int64_t V = m->config().n_vocab;
  ASSERT_EQ(static_cast<int64_t>(f.tellg()), 5 * V * 4);
  std::vector<float> got(5 * V);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(got.data()), got.size() * 4);
  SessionOptions so;
  so.n_ctx = 5;
  Session s(*m, so);
  const std::vector<int32_t> ids = {2, 10, 20, 30, 40};
  const std::vector<float> want = s.eval_all(ids);
  double max_d = 0;
  for (size_t i = 0; i < want.size(); ++i)
    max_d = std::max(max_d, double(std::fabs(got[i] - want[i])));
  EXPECT_LT(max_d, 1e-3);
}

TEST_F(Commands, GreedyRunIsReproducible) {
  const std::string cmd =
      kBin + " run -m " + model_ + " -p 'hello world' -n 12 --temp 0 --print-ids";
  const Output a = sh(cmd), b = sh(cmd);
  ASSERT_EQ(a.status, 0) << a.out;
  EXPECT_NE(a.out.find("t/s"), std::string::npos) << a.out;
  // The printed ids (the line before the speed report) are the same both times.
  auto ids = [](const std::string& s) {
    std::istringstream in(s);
    std::string line, last_ids;
    while (std::getline(in, line)) {
      if (!line.empty() && line.find_first_not_of("0123456789,") == std::string::npos)
        last_ids = line;
    }
    return last_ids;
  };
  EXPECT_FALSE(ids(a.out).empty()) << a.out;
  EXPECT_EQ(ids(a.out), ids(b.out));
}

TEST_F(Commands, BenchJsonHasLlamaBenchFields) {
  const Output o = sh(kBin + " bench -m " + model_ + " -p 16 -n 4 -r 2 -o json --no-bandwidth");
  ASSERT_EQ(o.status, 0) << o.out;
  const auto j = nlohmann::json::parse(o.out.substr(o.out.find('[')));
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["n_prompt"], 16);
  EXPECT_EQ(j[1]["n_gen"], 4);
  for (const auto& r : j) {
    EXPECT_GT(r["avg_ts"].get<double>(), 0.0);
    EXPECT_EQ(r["samples_ts"].size(), 2u);
    EXPECT_GT(r["peak_rss_bytes"].get<double>(), 0.0);
  }
}

// With the bandwidth measurement on, every repetition also gets its paired ceiling (probe reads
// between its tokens; the int8 peak around each prompt test), and the probe's 512 MiB are left
// out of the peak RSS (the tiny model's process stays far below it).
TEST_F(Commands, BenchPairsEachRepetitionWithItsCeiling) {
  const Output o = sh(kBin + " bench -m " + model_ + " -p 16 -n 3 -r 2 -o json");
  ASSERT_EQ(o.status, 0) << o.out;
  const auto j = nlohmann::json::parse(o.out.substr(o.out.find('[')));
  ASSERT_EQ(j.size(), 2u);
  const auto& pp = j[0];
  const auto& tg = j[1];
  ASSERT_EQ(pp["paired_int8_peak_gops"].size(), 2u) << pp.dump();
  ASSERT_EQ(tg["paired_read_bandwidth_gbps"].size(), 2u) << tg.dump();
  for (const auto& r : {pp, tg}) {
    ASSERT_EQ(r["paired_fraction_samples"].size(), 2u);
    for (const auto& f : r["paired_fraction_samples"]) EXPECT_GT(f.get<double>(), 0.0);
  }
  for (const auto& g : tg["paired_read_bandwidth_gbps"]) EXPECT_GT(g.get<double>(), 0.1);
  // The fraction is the repetition's own t/s against its own ceiling.
  const double bytes = tg["model_size"].get<double>();
  for (int i = 0; i < 2; ++i) {
    const double want = tg["samples_ts"][i].get<double>() * bytes /
                        (tg["paired_read_bandwidth_gbps"][i].get<double>() * 1e9);
    EXPECT_NEAR(tg["paired_fraction_samples"][i].get<double>(), want, 1e-9 + 1e-6 * want);
  }
  EXPECT_GT(tg["bandwidth_fraction_paired"].get<double>(), 0.0);
  ASSERT_EQ(tg["paired_best_fraction_samples"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    // The fastest probe read is at least the probe's mean rate.
    EXPECT_GE(tg["paired_best_read_bandwidth_gbps"][i].get<double>(),
              tg["paired_read_bandwidth_gbps"][i].get<double>() * (1 - 1e-9));
    EXPECT_GT(tg["paired_best_fraction_samples"][i].get<double>(), 0.0);
  }
  EXPECT_GT(pp["int8_fraction_paired"].get<double>(), 0.0);
  EXPECT_LT(tg["peak_rss_bytes"].get<double>(), 400.0 * (1 << 20));
  const Output md = sh(kBin + " bench -m " + model_ + " -p 0 -n 3 -r 1");
  ASSERT_EQ(md.status, 0) << md.out;
  EXPECT_NE(md.out.find("tg3, paired: "), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("tg3, paired best: "), std::string::npos) << md.out;
}

// llama-bench's -d: the tests run on a cache already holding that many tokens (names
// "pp16 @ d40"), a decode step's K/V reads are reported, and a prompt longer than the batch (the
// sliding rings cannot be cropped back: the depth is refilled) still runs.
TEST_F(Commands, BenchAtDepth) {
  const Output o =
      sh(kBin + " bench -m " + model_ + " -p 16 -n 4 -d 40 -b 8 -r 2 -o json " + "--no-bandwidth");
  ASSERT_EQ(o.status, 0) << o.out;
  const auto j = nlohmann::json::parse(o.out.substr(o.out.find('[')));
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["n_depth"], 40);
  EXPECT_EQ(j[1]["n_depth"], 40);
  EXPECT_GT(j[0]["avg_ts"].get<double>(), 0.0);
  // F16 K and V rows: global layers hold the 40..44 positions of the test's steps, sliding
  // layers at most their ring (window + batch 8).
  const double kv = j[1]["kv_bytes_per_token"].get<double>();
  auto m = Model::load(model_);
  double lo = 0, hi = 0;
  for (const LayerConfig& l : m->config().layers) {
    const double per_pos = 2.0 * 2.0 * l.n_head_kv * l.head_dim;
    if (l.sliding) {
      hi += per_pos * (m->config().sliding_window + 8);
    } else {
      lo += per_pos * 40;
      hi += per_pos * 44;
    }
  }
  EXPECT_GT(lo, 0.0);
  EXPECT_GE(kv, lo);
  EXPECT_LE(kv, hi);
  const Output md = sh(kBin + " bench -m " + model_ + " -p 16 -n 4 -d 40 -r 1 --no-bandwidth");
  ASSERT_EQ(md.status, 0) << md.out;
  EXPECT_NE(md.out.find("| pp16 @ d40 |"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| tg4 @ d40 |"), std::string::npos) << md.out;
  const Output bad = sh(kBin + " bench -m " + model_ + " -d -3 --no-bandwidth");
  EXPECT_EQ(WEXITSTATUS(bad.status), 1) << bad.out;
  EXPECT_NE(bad.out.find("-d -3"), std::string::npos) << bad.out;
}

TEST_F(Commands, MemoryBudgetRefusalNamesTheNumbers) {
  const Output o = sh(kBin + " run -m " + model_ + " -p hi --mem-budget 0.001");
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.out.find("memory budget exceeded"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("KV cache"), std::string::npos) << o.out;
}

TEST_F(Commands, BadModelFileIsAnErrorNotACrash) {
  const std::string bad = kDir + "/bad.gguf";
  std::ofstream(bad) << "not a gguf";
  const Output o = sh(kBin + " run -m " + bad + " -p hi");
  EXPECT_EQ(WEXITSTATUS(o.status), 1) << o.out;
  EXPECT_NE(o.out.find("error"), std::string::npos) << o.out;
}

}  // namespace
}  // namespace qgemma
