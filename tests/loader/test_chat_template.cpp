#include <gtest/gtest.h>

#include <vector>

#include "loader/chat_template.h"
#include "loader/error.h"

namespace qgemma {
namespace {

TEST(ChatTemplate, SingleUserTurnWithGenerationPrompt) {
  const std::vector<ChatMessage> m = {{"user", "Hello there"}};
  EXPECT_EQ(format_gemma4_chat(m), "<|turn>user\nHello there<turn|>\n<|turn>model\n");
  ChatOptions o;
  o.bos_text = true;
  o.add_generation_prompt = false;
  EXPECT_EQ(format_gemma4_chat(m, o), "<bos><|turn>user\nHello there<turn|>\n");
}

TEST(ChatTemplate, SystemRoleAndMultiTurn) {
  const std::vector<ChatMessage> m = {
      {"system", "  Be brief.\n"},
      {"user", "What is 2+2?"},
      {"assistant", "4"},
      {"user", "\nAnd 3+3? "},
  };
  EXPECT_EQ(format_gemma4_chat(m),
            "<|turn>system\nBe brief.<turn|>\n"
            "<|turn>user\nWhat is 2+2?<turn|>\n"
            "<|turn>model\n4<turn|>\n"
            "<|turn>user\nAnd 3+3?<turn|>\n"
            "<|turn>model\n");
}

TEST(ChatTemplate, DeveloperRoleAndThinking) {
  const std::vector<ChatMessage> m = {{"developer", "Rules."}, {"user", "Hi"}};
  ChatOptions o;
  o.enable_thinking = true;
  EXPECT_EQ(format_gemma4_chat(m, o),
            "<|turn>system\n<|think|>\nRules.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
  const std::vector<ChatMessage> u = {{"user", "Hi"}};
  EXPECT_EQ(format_gemma4_chat(u, o),
            "<|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
  ChatOptions e;
  e.empty_thought_channel = true;
  EXPECT_EQ(format_gemma4_chat(u, e),
            "<|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
}

TEST(ChatTemplate, ConsecutiveAssistantMessagesAreOneTurn) {
  const std::vector<ChatMessage> m = {
      {"user", "HI"}, {"assistant", "YO"}, {"model", "AND"}, {"user", "BYE"}};
  EXPECT_EQ(format_gemma4_chat(m),
            "<|turn>user\nHI<turn|>\n<|turn>model\nYOAND<turn|>\n<|turn>user\nBYE<turn|>\n"
            "<|turn>model\n");
}

TEST(ChatTemplate, ModelMessagesDropThoughtChannels) {
  const std::vector<ChatMessage> m = {
      {"user", "q"},
      {"assistant", "<|channel>thought\nhmm<channel|>The answer. <|channel>more<channel|>Done."}};
  EXPECT_EQ(format_gemma4_chat(m),
            "<|turn>user\nq<turn|>\n<|turn>model\nThe answer. Done.<turn|>\n<|turn>model\n");
  // User text is kept as written.
  const std::vector<ChatMessage> u = {{"user", "<|channel>x<channel|>y"}};
  EXPECT_EQ(format_gemma4_chat(u), "<|turn>user\n<|channel>x<channel|>y<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, RejectsBadRoles) {
  const std::vector<ChatMessage> late_system = {{"user", "a"}, {"system", "b"}};
  EXPECT_THROW(format_gemma4_chat(late_system), Error);
  const std::vector<ChatMessage> unknown = {{"tool_bot", "a"}};
  EXPECT_THROW(format_gemma4_chat(unknown), Error);
}

// Feeding the first prompt, the reply, and then the follow-up gives the same text as rendering
// the whole conversation at once.
TEST(ChatTemplate, NextUserTurnContinuesTheRender) {
  const std::vector<ChatMessage> first = {{"user", "one"}};
  const std::vector<ChatMessage> all = {{"user", "one"}, {"assistant", "reply"}, {"user", " two"}};
  const std::string whole = format_gemma4_chat(all);
  EXPECT_EQ(format_gemma4_chat(first) + "reply" + gemma4_next_user_turn(" two", false), whole);
  EXPECT_EQ(format_gemma4_chat(first) + "reply<turn|>" + gemma4_next_user_turn("two\n", true),
            whole);
}

TEST(ChatTemplate, Trim) {
  EXPECT_EQ(trim_whitespace(" \t\na b\r\n"), "a b");
  EXPECT_EQ(trim_whitespace("   "), "");
  EXPECT_EQ(trim_whitespace("x"), "x");
}

}  // namespace
}  // namespace qgemma
