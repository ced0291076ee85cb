// qgemma logits: the logits of every prompt position, float32 [tokens x vocab] row-major, for
// engine comparisons and KL-divergence studies. Prints the prompt's token ids.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "loader/chat_template.h"
#include "loader/error.h"
#include "loader/tokenizer.h"
#include "tools/command.h"
#include "tools/run_options.h"

namespace qgemma {
namespace {

struct LogitsCmd {
  ModelOptions model;
  std::string prompt;
  std::string tokens;  // comma-separated ids instead of a prompt
  std::string out;
  bool chat = false;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      ids.push_back(static_cast<int32_t>(std::stoll(item)));
    } catch (const std::exception&) {
      throw Error("--tokens: '" + item + "' is not a token id");
    }
  }
  return ids;
}

int run_logits(const LogitsCmd& cmd) {
  auto model = load_model_with_progress(cmd.model);
  std::vector<int32_t> ids;
  if (!cmd.tokens.empty()) {
    ids = parse_ids(cmd.tokens);
  } else {
    const Tokenizer tok = Tokenizer::from_gguf(model->file());
    std::string text = cmd.prompt;
    if (cmd.chat) {
      const ChatMessage msg{"user", cmd.prompt};
      text = format_gemma4_chat(std::span<const ChatMessage>(&msg, 1));
    }
    ids = tok.encode(text, tok.add_bos(), /*parse_special=*/cmd.chat);
  }
  if (ids.empty()) throw Error("logits: the prompt has no tokens");
  SessionOptions so = cmd.model.session();
  so.n_ctx = std::min<int64_t>(so.n_ctx, static_cast<int64_t>(ids.size()));
  Session session(*model, so);
  const std::vector<float> logits = session.eval_all(ids);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
  std::printf("\n");
  FILE* f = std::fopen(cmd.out.c_str(), "wb");
  if (!f) throw Error("logits: cannot open '" + cmd.out + "' for writing");
  const size_t n = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
  const bool ok = std::fclose(f) == 0 && n == logits.size();
  if (!ok) throw Error("logits: writing '" + cmd.out + "' failed");
  std::fprintf(stderr, "logits: wrote %zu x %lld floats to %s\n", ids.size(),
               static_cast<long long>(model->config().n_vocab), cmd.out.c_str());
  return 0;
}

const bool registered = register_command(
    "logits", "Write the float32 logits of every prompt position ([tokens x vocab])",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<LogitsCmd>();
      cmd->model.add(app);
      auto* p = app.add_option("-p,--prompt", cmd->prompt, "prompt text");
      auto* t = app.add_option("--tokens", cmd->tokens, "comma-separated token ids instead of -p");
      p->excludes(t);
      app.add_option("-o,--output", cmd->out, "output file (float32, row-major)")->required();
      app.add_flag("--chat-template", cmd->chat, "wrap the prompt in Gemma 4's chat template");
      run = [cmd] { return run_logits(*cmd); };
    });

}  // namespace
}  // namespace qgemma
