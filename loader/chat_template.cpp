#include "loader/chat_template.h"

#include "loader/error.h"

namespace qgemma {

namespace {

constexpr std::string_view kTurnOpen = "<|turn>";
constexpr std::string_view kTurnClose = "<turn|>\n";

bool is_system(std::string_view role) { return role == "system" || role == "developer"; }
bool is_model(std::string_view role) { return role == "assistant" || role == "model"; }

// The template's strip_thinking: drops "<|channel>...<channel|>" (thought channels) from a
// model message, keeping the text around them.
std::string strip_thinking(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = text.find("<channel|>", pos);
    const std::string_view part = text.substr(pos, end == text.npos ? text.npos : end - pos);
    out.append(part.substr(0, part.find("<|channel>")));
    if (end == text.npos) break;
    pos = end + std::string_view("<channel|>").size();
  }
  return out;
}

}  // namespace

std::string_view trim_whitespace(std::string_view s) {
  constexpr std::string_view kWs = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(kWs);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kWs) - b + 1);
}

std::string format_gemma4_chat(std::span<const ChatMessage> messages, const ChatOptions& opts) {
  std::string out;
  if (opts.bos_text) out += "<bos>";
  size_t first = 0;
  const bool has_system = !messages.empty() && is_system(messages[0].role);
  if (has_system || opts.enable_thinking) {
    out.append(kTurnOpen).append("system\n");
    if (opts.enable_thinking) out += "<|think|>\n";
    if (has_system) {
      out.append(trim_whitespace(messages[0].content));
      first = 1;
    }
    out.append(kTurnClose);
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (is_system(m.role)) throw Error("chat: a system message must be the first message");
    if (m.role != "user" && !is_model(m.role)) {
      throw Error("chat: unknown role '" + m.role + "' (expected system, user or assistant)");
    }
    const bool model = is_model(m.role);
    const bool continues = model && i > first && is_model(messages[i - 1].role);
    const bool continued = model && i + 1 < messages.size() && is_model(messages[i + 1].role);
    if (!continues) out.append(kTurnOpen).append(model ? "model" : m.role).append("\n");
    out.append(model ? trim_whitespace(strip_thinking(m.content)) : trim_whitespace(m.content));
    if (!continued) out.append(kTurnClose);
  }
  if (opts.add_generation_prompt) {
    out.append(kTurnOpen).append("model\n");
    if (opts.empty_thought_channel && !opts.enable_thinking) out += "<|channel>thought\n<channel|>";
  }
  return out;
}

std::string gemma4_next_user_turn(std::string_view user_text, bool reply_closed) {
  std::string out(reply_closed ? "\n" : kTurnClose);
  out.append(kTurnOpen).append("user\n");
  out.append(trim_whitespace(user_text));
  out.append(kTurnClose);
  out.append(kTurnOpen).append("model\n");
  return out;
}

}  // namespace qgemma
