// qgemma chat: an interactive multi-turn conversation that keeps the KV cache between turns, so
// each turn only evaluates the new tokens. Lines are read from stdin; /reset starts over, /exit
// (or end of input) quits.
#include <chrono>
#include <cstdio>
#include <iostream>
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

struct ChatCmd {
  ModelOptions model;
  SamplingOptions sampling;
  std::string system;
  int n_predict = 1024;  // per reply
  DraftOptions draft;    // --draft: speculative decoding with an MTP drafter
};

int run_chat(const ChatCmd& cmd) {
  auto model = load_model_with_progress(cmd.model);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  Session session(*model, cmd.model.session());
  Sampler sampler(cmd.sampling.p);
  bool first = true, reply_closed = false;
  ChatDraftState draft_state;  // --draft
  std::fprintf(stderr, "qgemma chat: type a message, /reset to start over, /exit to quit\n");
  std::string line;
  while (true) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      session.reset();
      sampler.reset();
      first = true;
      continue;
    }
    std::vector<int32_t> ids;
    if (first) {
      std::vector<ChatMessage> msgs;
      if (!cmd.system.empty()) msgs.push_back({"system", cmd.system});
      msgs.push_back({"user", line});
      ids = tok.encode(format_gemma4_chat(msgs), tok.add_bos(), true);
    } else {
      ids = tok.encode(gemma4_next_user_turn(line, reply_closed), false, true);
    }
    if (session.n_past() + static_cast<int64_t>(ids.size()) + 1 >= cmd.model.ctx) {
      throw Error("chat: the context of " + std::to_string(cmd.model.ctx) +
                  " tokens is full (use /reset or a larger --ctx)");
    }
    first = false;
    if (cmd.draft.enabled()) {
      reply_closed =
          chat_reply_speculative(draft_state, *model, session, cmd.draft, cmd.model.model,
                                 cmd.sampling.p, ids, cmd.n_predict, tok);
      continue;
    }
    for (int32_t id : ids) sampler.accept(id);
    const auto t0 = std::chrono::steady_clock::now();
    std::span<const float> logits = session.eval(ids, 1);
    StreamingDecoder out(tok);
    int n = 0;
    reply_closed = false;
    for (; n < cmd.n_predict && session.n_past() < cmd.model.ctx; ++n) {
      const int32_t id = sampler.sample(logits);
      sampler.accept(id);
      logits = session.eval(std::span<const int32_t>(&id, 1), 1);  // the cache keeps the reply
      if (tok.is_stop(id)) {
        reply_closed = id == tok.eot_id();
        break;
      }
      std::fputs(out.push(id).c_str(), stdout);
      std::fflush(stdout);
    }
    std::fputs(out.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[%zu prompt + %d reply tokens in %.2f s, context %lld]\n", ids.size(), n,
                 s, static_cast<long long>(session.n_past()));
  }
  return 0;
}

const bool registered =
    register_command("chat", "Interactive multi-turn chat (keeps the KV cache between turns)",
                     [](CLI::App& app, std::function<int()>& run) {
                       auto cmd = std::make_shared<ChatCmd>();
                       cmd->model.add(app);
                       cmd->sampling.add(app);
                       app.add_option("--system", cmd->system, "system prompt");
                       app.add_option("-n,--n-predict", cmd->n_predict, "most tokens per reply")
                           ->capture_default_str();
                       cmd->draft.add(app);
                       run = [cmd] {
                         if (cmd->draft.enabled())
                           cmd->model.require_cpu("--draft (speculative decoding)");
                         return run_chat(*cmd);
                       };
                     });

}  // namespace
}  // namespace qgemma
