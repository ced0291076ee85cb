// qgemma cluster-head: adds a clustered (centroid) output head to an MTP drafter GGUF, computed
// from the drafter's own tied embedding by balanced k-means (runtime/cluster_head.h). Writes a
// NEW file: the input's metadata and tensors plus masked_embd_centroids.weight and
// masked_embd_ordering (llama.cpp's names) and gemma4-assistant.centroid_top_k.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/cluster_head.h"
#include "runtime/drafter.h"
#include "runtime/threadpool.h"
#include "runtime/weights.h"
#include "tools/command.h"

namespace qgemma {
namespace {

struct ClusterHeadCmd {
  std::string model, out;
  std::string type = "q8_0";
  int top = kDefaultClusterTopK;
  int threads = 0;
  ClusteringOptions o;
};

int run_cluster_head(const ClusterHeadCmd& cmd) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto secs = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  TensorType ctype;
  if (cmd.type == "f32") {
    ctype = TensorType::F32;
  } else if (cmd.type == "f16") {
    ctype = TensorType::F16;
  } else if (cmd.type == "q8_0") {
    ctype = TensorType::Q8_0;
  } else {
    throw Error("--type '" + cmd.type + "': expected f32, f16 or q8_0");
  }
  const auto f = GgufFile::open(cmd.model);
  const DrafterConfig c = DrafterConfig::from_gguf(*f);  // a gemma4-assistant drafter
  std::error_code ec;  // checked before the minutes of clustering (and again by the writer)
  if (std::filesystem::exists(cmd.out, ec) && std::filesystem::equivalent(cmd.out, cmd.model, ec)) {
    throw Error("cluster-head: the output " + cmd.out +
                " is the input file (it is never modified)");
  }
  if (cmd.o.n_clusters < 1 || c.n_vocab % cmd.o.n_clusters != 0) {
    throw Error("--clusters " + std::to_string(cmd.o.n_clusters) +
                ": the clusters do not divide the vocabulary of " + std::to_string(c.n_vocab) +
                " tokens (all clusters have the same size)");
  }
  if (cmd.top < 1 || cmd.top > cmd.o.n_clusters) {
    throw Error("--top " + std::to_string(cmd.top) + ": expected 1..--clusters (" +
                std::to_string(cmd.o.n_clusters) + ")");
  }
  const Matrix table = load_matrix(*f, "token_embd.weight", c.n_embd, c.n_vocab);
  if (f->find_tensor(kCentroidsTensor) || f->find_tensor(kOrderingTensor)) {
    std::fprintf(stderr, "cluster-head: %s already has a clustered head; it is replaced\n",
                 cmd.model.c_str());
  }
  ThreadPool pool(cmd.threads);
  std::fprintf(stderr,
               "cluster-head: %lld tokens x %d (%s) into %lld clusters of %lld, %d rounds, %d "
               "threads\n",
               static_cast<long long>(c.n_vocab), c.n_embd,
               std::string(type_traits(table.type).name).c_str(),
               static_cast<long long>(cmd.o.n_clusters),
               static_cast<long long>(cmd.o.n_clusters > 0 ? c.n_vocab / cmd.o.n_clusters : 0),
               cmd.o.iters, pool.size());
  const Clustering cl = cluster_embeddings(table, cmd.o, pool, [&](int round, const Clustering& s) {
    std::fprintf(stderr, "  round %d: mean squared distance %.5g, %lld tokens moved (%.1f s)\n",
                 round + 1, s.mse.back(), static_cast<long long>(s.moved.back()), secs());
  });
  write_with_cluster_head(*f, cmd.out, cl, ctype, cmd.top);
  std::fprintf(
      stderr, "cluster-head: wrote %s (+ %s [%d x %lld] %s, %s [%lld] i32, top %d) in %.1f s\n",
      cmd.out.c_str(), kCentroidsTensor, c.n_embd, static_cast<long long>(cl.n_clusters),
      cmd.type.c_str(), kOrderingTensor, static_cast<long long>(c.n_vocab), cmd.top, secs());
  return 0;
}

const bool registered = register_command(
    "cluster-head",
    "Add a clustered (centroid) output head to an MTP drafter GGUF (writes a new file)",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<ClusterHeadCmd>();
      app.add_option("-m,--model", cmd->model, "drafter GGUF (gemma4-assistant)")->required();
      app.add_option("-o,--output", cmd->out, "output GGUF (a new file)")->required();
      app.add_option("--clusters", cmd->o.n_clusters, "clusters (must divide the vocabulary)")
          ->capture_default_str();
      app.add_option("--top", cmd->top, "clusters scored per step (stored in the file)")
          ->capture_default_str();
      app.add_option("--iters", cmd->o.iters, "k-means rounds")->capture_default_str();
      app.add_option("--candidates", cmd->o.candidates,
                     "nearest centroids per token for the balanced assignment")
          ->capture_default_str();
      app.add_option("--type", cmd->type, "centroid tensor type: q8_0 | f16 | f32")
          ->capture_default_str();
      app.add_option("--seed", cmd->o.seed, "random seed (initial centroids)")
          ->capture_default_str();
      app.add_option("-t,--threads", cmd->threads, "threads (default: all cores)");
      run = [cmd] { return run_cluster_head(*cmd); };
    });

}  // namespace
}  // namespace qgemma
