// Gemma 4's chat format (spec section 6), as its Jinja chat template renders it:
//
//   <bos><|turn>system
//   {system text}<turn|>
//   <|turn>user
//   {user text}<turn|>
//   <|turn>model
//   {model text}<turn|>
//   <|turn>model            <- the generation prompt
//
// Roles: "system" / "developer" (only as the first message), "user", "assistant" / "model"
// (rendered as "model"). Message texts are trimmed of surrounding whitespace like the template's
// `| trim`; thought channels ("<|channel>...<channel|>") are removed from model messages.
// Consecutive assistant messages form one model turn (contents concatenated), as in the real
// template. The rendered text contains control tokens: encode it with parse_special = true. <bos>
// is not part of the text unless ChatOptions::bos_text is set: Tokenizer::encode(text, add_bos =
// true) adds it as an id.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace qgemma {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatOptions {
  bool add_generation_prompt = true;  // end with "<|turn>model\n"
  bool bos_text = false;              // start with the literal "<bos>"
  bool enable_thinking = false;       // system turn starts with "<|think|>\n" (thinking mode)
  // Some Gemma 4 templates follow the generation prompt with an empty thought channel
  // "<|channel>thought\n<channel|>" when thinking is off. Off by default (see docs/tokenizer.md).
  bool empty_thought_channel = false;
};

// The whole conversation as one prompt. Throws qgemma::Error for an unknown role or a system
// message that is not first.
std::string format_gemma4_chat(std::span<const ChatMessage> messages, const ChatOptions& opts = {});

// What `qgemma chat` feeds after the model's reply to continue the conversation with one more
// user message and open the next model turn. `reply_closed` says whether the <turn|> that ended
// the reply was already fed to the model (then only the "\n" after it is missing).
std::string gemma4_next_user_turn(std::string_view user_text, bool reply_closed);

// Removes leading and trailing whitespace (Python str.strip() on ASCII whitespace).
std::string_view trim_whitespace(std::string_view s);

}  // namespace qgemma
