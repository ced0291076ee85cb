// qgemma synth: writes a Gemma 4 GGUF with deterministic random weights (runtime/synth.h).
#include <cstdio>
#include <memory>
#include <string>

#include "loader/error.h"
#include "runtime/synth.h"
#include "runtime/synth_drafter.h"
#include "tools/command.h"

namespace qgemma {
namespace {

struct SynthCmd {
  std::string out;
  std::string type = "f32";
  SynthOptions o;
  bool centroids = false;  // drafter presets: add a synthetic clustered head
  SynthClusterHead head;
};

int run_synth(const SynthCmd& cmd) {
  SynthOptions o = cmd.o;
  if (!parse_weight_type(cmd.type, &o.type)) {
    throw Error("--type '" + cmd.type +
                "': expected f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k");
  }
  if (is_drafter_preset(o.preset)) {  // MTP drafters (gemma4-assistant), see runtime/drafter.h
    synth_drafter_write(cmd.out, synth_drafter_preset(o.preset), o.type, o.seed,
                        cmd.centroids ? &cmd.head : nullptr);
  } else {
    if (cmd.centroids) throw Error("--centroids: only for the *-assistant (drafter) presets");
    synth_write(cmd.out, o);
  }
  std::fprintf(stderr, "synth: wrote %s (preset %s, %s)\n", cmd.out.c_str(), o.preset.c_str(),
               cmd.type.c_str());
  return 0;
}

const bool registered = register_command(
    "synth", "Write a Gemma 4 GGUF with deterministic random weights (tests, benchmarks)",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<SynthCmd>();
      app.add_option("-o,--output", cmd->out, "output GGUF file")->required();
      app.add_option("--preset", cmd->o.preset,
                     "tiny | small | 12b | tiny-assistant | small-assistant | 12b-assistant")
          ->capture_default_str();
      app.add_option("--type", cmd->type, "f32 | f16 | bf16 | q8_0 | q4_0 | q4_k | q5_k | q6_k")
          ->capture_default_str();
      app.add_option("--tokenizer", cmd->o.tokenizer_json,
                     "tokenizer.json to embed (default: a byte-level vocabulary)");
      app.add_option("--seed", cmd->o.seed, "random seed")->capture_default_str();
      app.add_flag("--centroids", cmd->centroids,
                   "drafter presets: add a synthetic clustered (centroid) output head");
      app.add_option("--clusters", cmd->head.n_clusters,
                     "--centroids: clusters (default 2048 for 262144 tokens, else vocab / 32)");
      app.add_option("--top", cmd->head.top_k,
                     "--centroids: clusters scored per step (default 32, else clusters / 8)");
      run = [cmd] { return run_synth(*cmd); };
    });

}  // namespace
}  // namespace qgemma
