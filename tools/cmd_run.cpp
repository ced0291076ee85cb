// qgemma run: generate text from a prompt, streaming tokens to stdout; speed on stderr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "loader/chat_template.h"
#include "loader/error.h"
#include "loader/tokenizer.h"
#include "runtime/sampling.h"
#include "tools/command.h"
#include "tools/draft_options.h"
#include "tools/run_options.h"

namespace qgemma {
namespace {

struct RunCmd {
  ModelOptions model;
  SamplingOptions sampling;
  std::string prompt;
  std::string system;
  int n_predict = 128;
  bool raw = false;
  bool chat_template = false;
  bool print_ids = false;
  DraftOptions draft;  // --draft: speculative decoding with an MTP drafter
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int run_run(const RunCmd& cmd) {
  auto model = load_model_with_progress(cmd.model);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  std::string text = cmd.prompt;
  const bool chat = cmd.chat_template || !cmd.raw;
  if (chat) {
    std::vector<ChatMessage> msgs;
    if (!cmd.system.empty()) msgs.push_back({"system", cmd.system});
    msgs.push_back({"user", cmd.prompt});
    text = format_gemma4_chat(msgs);
  }
  const std::vector<int32_t> prompt = tok.encode(text, tok.add_bos(), /*parse_special=*/chat);
  if (prompt.empty()) throw Error("run: the prompt has no tokens");

  Session session(*model, cmd.model.session());
  if (cmd.draft.enabled()) {
    return run_speculative(*model, session, cmd.draft, cmd.model.model, cmd.sampling.p, prompt,
                           cmd.n_predict, tok, cmd.print_ids);
  }
  Sampler sampler(cmd.sampling.p);
  for (int32_t id : prompt) sampler.accept(id);

  const auto t_prompt = Clock::now();
  std::span<const float> logits = session.eval(prompt, 1);
  const double prompt_s = seconds_since(t_prompt);

  StreamingDecoder out(tok);
  std::vector<int32_t> generated;
  const auto t_gen = Clock::now();
  for (int i = 0; i < cmd.n_predict; ++i) {
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    generated.push_back(id);
    if (tok.is_stop(id)) break;
    std::fputs(out.push(id).c_str(), stdout);
    std::fflush(stdout);
    if (session.n_past() >= cmd.model.ctx) break;
    logits = session.eval(std::span<const int32_t>(&generated.back(), 1), 1);
  }
  std::fputs(out.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double gen_s = seconds_since(t_gen);
  if (cmd.print_ids) {
    for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? "," : "", generated[i]);
    std::printf("\n");
  }
  std::fflush(stdout);  // the text ends before the statistics on stderr, also through a pipe
  std::fprintf(stderr,
               "prompt: %zu tokens in %.2f s (%.2f t/s) | generation: %zu tokens in %.2f s "
               "(%.2f t/s) | %d threads\n",
               prompt.size(), prompt_s, prompt.size() / prompt_s, generated.size(), gen_s,
               generated.size() / gen_s, session.n_threads());
  return 0;
}

const bool registered = register_command(
    "run", "Generate text from a prompt", [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<RunCmd>();
      cmd->model.add(app);
      cmd->sampling.add(app);
      app.add_option("-p,--prompt", cmd->prompt, "prompt")->required();
      app.add_option("-n,--n-predict", cmd->n_predict, "tokens to generate")->capture_default_str();
      app.add_option("--system", cmd->system, "system prompt (chat template only)");
      auto* r = app.add_flag("--raw", cmd->raw, "feed the prompt as is (no chat template)");
      auto* c = app.add_flag("--chat-template", cmd->chat_template,
                             "wrap the prompt in Gemma 4's chat template (the default)");
      r->excludes(c);
      app.add_flag("--print-ids", cmd->print_ids, "print the generated token ids at the end");
      cmd->draft.add(app);
      run = [cmd] {
        if (cmd->draft.enabled()) cmd->model.require_cpu("--draft (speculative decoding)");
        return run_run(*cmd);
      };
    });

}  // namespace
}  // namespace qgemma
