// `qgemma serve` end to end: the built binary runs as a child process on an ephemeral port with a
// synthetic `tiny` model; cpp-httplib's client talks to it. Greedy chat equals `qgemma run`,
// streaming equals non-streaming, max_tokens / stop strings / usage, errors are JSON 400s that
// leave the server serving, prefix reuse equals a cold cache. Plus StopFilter against a
// reference on random text.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loader/chat_template.h"
#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "tools/serve_stop.h"
#include "tools/shell_util.h"

#if defined(QGEMMA_HAVE_HTTPLIB)
#include <httplib.h>
#endif

namespace qgemma {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// StopFilter (no server needed)

// What a correct filter must produce: the text before the earliest stop string.
std::string reference_cut(const std::string& text, const std::vector<std::string>& stops,
                          bool* hit) {
  size_t first = std::string::npos;
  for (const auto& s : stops)
    if (!s.empty()) first = std::min(first, text.find(s));
  *hit = first != std::string::npos;
  return text.substr(0, *hit ? first : text.size());
}

TEST(StopFilter, SplitAcrossPiecesIsNeverSent) {
  StopFilter f({"lo w"});
  std::string out;
  for (const char* p : {"he", "ll", "o wor", "ld"}) {
    out += f.push(p);
    EXPECT_EQ(out.find("lo"), std::string::npos) << out;  // never sends the stop's beginning
  }
  out += f.finish();
  EXPECT_TRUE(f.hit());
  EXPECT_EQ(out, "hel");
  EXPECT_EQ(f.text(), "hel");
}

TEST(StopFilter, HeldBackPrefixIsReleasedWhenItIsNotAStop) {
  StopFilter f({"lox", "zzz"});
  std::string out = f.push("hel");
  out += f.push("lo");
  EXPECT_EQ(out, "hel");  // "lo" could start "lox"
  out += f.push(" world");
  EXPECT_EQ(out, "hello world");
  out += f.finish();
  EXPECT_FALSE(f.hit());
  EXPECT_EQ(out, "hello world");
}

TEST(StopFilter, MatchesTheReferenceOnRandomTextAndPieces) {
  std::mt19937 rng(1234);
  const std::string alphabet = "ab c\xC3\xA9";  // includes a 2-byte UTF-8 character
  auto random_text = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      const int k = rng() % 5;
      s += k < 4 ? std::string(1, alphabet[k]) : std::string("\xC3\xA9");
    }
    return s;
  };
  for (int iter = 0; iter < 2000; ++iter) {
    const std::string text = random_text(1 + rng() % 40);
    std::vector<std::string> stops;
    for (int i = 0, n = rng() % 4; i < n; ++i) stops.push_back(random_text(rng() % 4));
    bool want_hit = false;
    const std::string want = reference_cut(text, stops, &want_hit);
    StopFilter f(stops);
    std::string out;
    for (size_t pos = 0; pos < text.size();) {
      size_t len = 1 + rng() % 5;
      len = std::min(len, text.size() - pos);
      out += f.push(text.substr(pos, len));
      // What was sent is always a prefix of the final answer.
      ASSERT_EQ(want.compare(0, out.size(), out), 0) << "text '" << text << "'";
      pos += len;
    }
    out += f.finish();
    ASSERT_EQ(out, want) << "text '" << text << "'";
    ASSERT_EQ(f.hit(), want_hit);
    ASSERT_EQ(f.text(), want);
  }
}

#if defined(QGEMMA_HAVE_HTTPLIB)

// ---------------------------------------------------------------------------------------------
// The server

const std::string& kBin = testing_util::kQgemmaBin;
const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_serve_tmp";
const char* kCtx = "1024";

// A `qgemma serve` child process on a free port; its stdout + stderr go to `log`.
struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
  std::string log, error;

  ~ServerProcess() { stop(); }  // also when a test fails half-way
  void start(const std::string& log_path, const std::vector<std::string>& args) {
    log = log_path;
    std::remove(log.c_str());  // a previous run's "listening on" line must not be read
    std::vector<std::string> argv = {"qgemma", "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const char* a : {"--port", "0", "-t", "2", "--backend", "cpu"}) argv.push_back(a);
    pid = fork();
    if (pid == 0) {
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      if (f) dup2(fileno(stdout), 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(kBin.c_str(), cargv.data());
      _exit(127);
    }
    // Wait for "listening on http://127.0.0.1:PORT".
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
      const std::string s = read_log();
      const std::string key = "listening on http://127.0.0.1:";
      if (const size_t p = s.find(key); p != std::string::npos) {
        port = std::atoi(s.c_str() + p + key.size());
        if (port > 0) return;
      }
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        error = "qgemma serve exited: " + s;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    error = "qgemma serve did not start within 120 s";
  }
  void stop() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      int st = 0;
      waitpid(pid, &st, 0);
      pid = -1;
    }
  }
  std::string read_log() const {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

struct Reply {
  int status = 0;
  std::string body;
  json j;  // the body parsed (null when it is not JSON)
};

Reply post_raw(int port, const std::string& path, const std::string& body) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(120, 0);
  auto res = cli.Post(path.c_str(), body, "application/json");
  Reply r;
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return r;
}

// `qgemma run` output with --print-ids: the text and the ids.
struct RunOutput {
  std::string text;
  std::vector<int> ids;
  std::string raw;
};
RunOutput run_cli(const std::string& args) {
  const auto o = testing_util::sh("(" + kBin + " run " + args + " --print-ids 2>/dev/null)");
  RunOutput r;
  r.raw = o.out;
  // stdout is the text, "\n", the ids, "\n".
  if (o.status != 0 || o.out.size() < 2) return r;
  const size_t ids_at = o.out.rfind('\n', o.out.size() - 2);
  if (ids_at == std::string::npos) return r;
  r.text = o.out.substr(0, ids_at);
  std::stringstream ids(o.out.substr(ids_at + 1));
  for (std::string x; std::getline(ids, x, ',');) r.ids.push_back(std::stoi(x));
  return r;
}

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::ifstream(kBin).good()) return;
    std::system(("mkdir -p " + kDir).c_str());
    model_ = kDir + "/tiny_q4_0.gguf";
    const auto synth =
        testing_util::sh(kBin + " synth -o " + model_ + " --preset tiny --type q4_0");
    if (synth.status != 0) {
      server_.error = synth.out;
      return;
    }
    server_.start(kDir + "/serve.log", {"-m", model_, "--ctx", kCtx});
    port_ = server_.port;
  }
  static void TearDownTestSuite() { server_.stop(); }
  void SetUp() override {
    if (!std::ifstream(kBin).good()) GTEST_SKIP() << kBin << " is not built";
    ASSERT_TRUE(server_.error.empty()) << server_.error;
    ASSERT_GT(port_, 0);
  }
  static std::string server_log() { return server_.read_log(); }
  static Reply post_raw(const std::string& path, const std::string& body) {
    return qgemma::post_raw(port_, path, body);
  }
  static Reply post(const std::string& path, const json& body) {
    return post_raw(path, body.dump());
  }
  static Reply get(const std::string& path) {
    httplib::Client cli("127.0.0.1", port_);
    auto res = cli.Get(path.c_str());
    Reply r;
    if (!res) return r;
    r.status = res->status;
    r.body = res->body;
    r.j = json::parse(r.body, nullptr, false);
    return r;
  }
  // A streamed reply's `data:` payloads, in order ("[DONE]" included as a string).
  static std::vector<std::string> events(const std::string& body) {
    std::vector<std::string> out;
    std::istringstream in(body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    }
    return out;
  }

  static ServerProcess server_;
  static int port_;
  static std::string model_;
};
ServerProcess Serve::server_;
int Serve::port_ = 0;
std::string Serve::model_;

json user(const std::string& text) { return {{"role", "user"}, {"content", text}}; }

json greedy_chat(const json& messages, int max_tokens) {
  return {{"messages", messages}, {"temperature", 0}, {"max_tokens", max_tokens}};
}

// Sampling from the whole distribution with a fixed seed: the tiny model's greedy replies are
// one token repeated, its sampled replies vary (and are reproducible).
json sampled_chat(const json& messages, int max_tokens, int seed = 7) {
  return {{"messages", messages},
          {"temperature", 1.0},
          {"top_k", 0},
          {"top_p", 1.0},
          {"min_p", 0.0},
          {"seed", seed},
          {"max_tokens", max_tokens}};
}

// UTF-8 code points of s (as byte offsets), for cutting stop strings out of generated text.
std::vector<size_t> code_point_starts(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  return out;
}

TEST_F(Serve, HealthAndModels) {
  const Reply h = get("/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.j["status"], "ok") << h.body;
  const Reply m = get("/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.j["object"], "list");
  ASSERT_EQ(m.j["data"].size(), 1u) << m.body;
  EXPECT_EQ(m.j["data"][0]["id"], "tiny_q4_0");
  EXPECT_EQ(m.j["data"][0]["object"], "model");
}

TEST_F(Serve, ChatEqualsRunGreedyAndSampled) {
  const int n = 12;
  const Tokenizer tok = Tokenizer::from_gguf(*GgufFile::open(model_));
  const std::vector<ChatMessage> msgs = {{"user", "hello world"}};
  const size_t n_prompt = tok.encode(format_gemma4_chat(msgs), tok.add_bos(), true).size();
  for (const bool greedy : {true, false}) {
    SCOPED_TRACE(greedy ? "greedy" : "sampled");
    const json messages = json::array({user("hello world")});
    json req = greedy ? greedy_chat(messages, n) : sampled_chat(messages, n, 11);
    req["cache_prompt"] = false;
    const Reply r = post("/v1/chat/completions", req);
    ASSERT_EQ(r.status, 200) << r.body;
    // The OpenAI shape.
    EXPECT_EQ(r.j["object"], "chat.completion");
    EXPECT_TRUE(r.j["id"].is_string());
    EXPECT_TRUE(r.j["created"].is_number_integer());
    EXPECT_EQ(r.j["model"], "tiny_q4_0");
    ASSERT_EQ(r.j["choices"].size(), 1u);
    const json& c = r.j["choices"][0];
    EXPECT_EQ(c["index"], 0);
    EXPECT_EQ(c["message"]["role"], "assistant");
    const std::string content = c["message"]["content"].get<std::string>();

    // `qgemma run` on the same templated prompt.
    const std::string flags =
        greedy ? " --temp 0" : " --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 11";
    const RunOutput run = run_cli("-m " + model_ + " -p 'hello world'" + flags +
                                  " -t 2 --backend cpu --ctx " + kCtx + " -n " + std::to_string(n));
    const std::string& run_text = run.text;
    const std::vector<int>& run_ids = run.ids;
    ASSERT_FALSE(run_ids.empty()) << run.raw;
    EXPECT_FALSE(run_text.empty());
    EXPECT_EQ(content, run_text);
    EXPECT_EQ(r.j["usage"]["completion_tokens"], run_ids.size());
    EXPECT_EQ(r.j["usage"]["prompt_tokens"], n_prompt);
    EXPECT_EQ(r.j["usage"]["total_tokens"], n_prompt + run_ids.size());
    EXPECT_EQ(r.j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    const bool stopped = tok.is_stop(run_ids.back());
    EXPECT_EQ(c["finish_reason"], stopped ? "stop" : "length");
  }
}

TEST_F(Serve, StreamingConcatenatesToTheNonStreamingContent) {
  for (const bool chat : {true, false}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    json req = sampled_chat(json::array({user("stream me")}), 24);
    if (!chat) {
      req.erase("messages");
      req["prompt"] = "Once upon a time";
    }
    const Reply plain = post(path, req);
    ASSERT_EQ(plain.status, 200) << plain.body;
    const json& pc = plain.j["choices"][0];
    const std::string want = chat ? pc["message"]["content"] : pc["text"];
    EXPECT_EQ(plain.j["object"], chat ? "chat.completion" : "text_completion");

    req["stream"] = true;
    req["stream_options"] = {{"include_usage", true}};
    const Reply s = post(path, req);
    ASSERT_EQ(s.status, 200) << s.body;
    const std::vector<std::string> ev = events(s.body);
    ASSERT_GE(ev.size(), 3u) << s.body;
    EXPECT_EQ(ev.back(), "[DONE]");
    std::string got, finish;
    json usage;
    for (size_t i = 0; i + 1 < ev.size(); ++i) {
      const json e = json::parse(ev[i]);
      EXPECT_EQ(e["object"], chat ? "chat.completion.chunk" : "text_completion");
      if (e.contains("usage")) {
        usage = e["usage"];
        EXPECT_TRUE(e["choices"].empty());
        continue;
      }
      const json& c = e["choices"][0];
      if (chat) {
        if (i == 0) {
          EXPECT_EQ(c["delta"]["role"], "assistant");
        }
        if (c["delta"].contains("content")) got += c["delta"]["content"].get<std::string>();
      } else {
        got += c["text"].get<std::string>();
      }
      if (!c["finish_reason"].is_null()) {
        EXPECT_TRUE(finish.empty()) << "two final chunks";
        finish = c["finish_reason"];
      }
    }
    EXPECT_EQ(got, want);
    EXPECT_EQ(finish, pc["finish_reason"]);
    EXPECT_EQ(usage["completion_tokens"], plain.j["usage"]["completion_tokens"]);
    EXPECT_EQ(usage["prompt_tokens"], plain.j["usage"]["prompt_tokens"]);
  }
}

TEST_F(Serve, MaxTokensGivesLengthAndUsage) {
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    json req = greedy_chat(json::array({user("count")}), 1);
    req.erase("max_tokens");
    req[key] = 5;
    const Reply r = post("/v1/chat/completions", req);
    ASSERT_EQ(r.status, 200) << r.body;
    const json& u = r.j["usage"];
    // The tiny model's greedy reply to this prompt does not stop within 5 tokens (otherwise
    // the reason is "stop" and fewer tokens are counted).
    if (r.j["choices"][0]["finish_reason"] == "length") {
      EXPECT_EQ(u["completion_tokens"], 5);
    } else {
      EXPECT_LT(u["completion_tokens"].get<int>(), 5);
    }
    EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
  }
}

TEST_F(Serve, StopStringsCutTheTextStreamingOrNot) {
  const json msgs = json::array({user("tell me a story")});
  const Reply full = post("/v1/chat/completions", sampled_chat(msgs, 32));
  ASSERT_EQ(full.status, 200) << full.body;
  const std::string text = full.j["choices"][0]["message"]["content"];
  const std::vector<size_t> cp = code_point_starts(text);
  ASSERT_GE(cp.size(), 8u) << "the greedy reply is too short to cut: '" << text << "'";
  // Two code points from the middle of the reply; the answer ends before its first occurrence.
  const std::string stop = text.substr(cp[4], cp[6] - cp[4]);
  const std::string want = text.substr(0, text.find(stop));
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "plain");
    json req = sampled_chat(msgs, 32);
    req["stop"] = json::array({"\x01never\x02", stop});
    req["stream"] = stream;
    const Reply r = post("/v1/chat/completions", req);
    ASSERT_EQ(r.status, 200) << r.body;
    std::string got, finish;
    if (stream) {
      for (const std::string& e : events(r.body)) {
        if (e == "[DONE]") continue;
        const json c = json::parse(e)["choices"][0];
        got += c["delta"].value("content", "");
        if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
      }
    } else {
      got = r.j["choices"][0]["message"]["content"];
      finish = r.j["choices"][0]["finish_reason"];
    }
    EXPECT_EQ(got, want) << "stop '" << stop << "'";
    EXPECT_EQ(finish, "stop");
  }
  // A stop string across two tokens: the last character of one streamed piece and the first of
  // the next (each piece is one token's text here).
  {
    json req = sampled_chat(msgs, 32);
    req["stream"] = true;
    const Reply r = post("/v1/chat/completions", req);
    ASSERT_EQ(r.status, 200) << r.body;
    std::vector<std::string> pieces;
    for (const std::string& e : events(r.body)) {
      if (e == "[DONE]") continue;
      const std::string c = json::parse(e)["choices"][0]["delta"].value("content", "");
      if (!c.empty()) pieces.push_back(c);
    }
    std::string across;
    for (size_t i = 1; i + 1 < pieces.size() && across.empty(); ++i) {
      const std::vector<size_t> a = code_point_starts(pieces[i]);
      const std::vector<size_t> b = code_point_starts(pieces[i + 1]);
      const std::string last = pieces[i].substr(a.back());
      const std::string first = pieces[i + 1].substr(0, b.size() > 1 ? b[1] : std::string::npos);
      if (last != first) across = last + first;
    }
    ASSERT_FALSE(across.empty()) << r.body;
    const std::string want2 = text.substr(0, text.find(across));
    for (const bool stream : {false, true}) {
      SCOPED_TRACE(stream ? "across, stream" : "across, plain");
      json q = sampled_chat(msgs, 32);
      q["stop"] = across;
      q["stream"] = stream;
      const Reply s = post("/v1/chat/completions", q);
      ASSERT_EQ(s.status, 200) << s.body;
      std::string got;
      if (stream) {
        for (const std::string& e : events(s.body)) {
          if (e != "[DONE]") got += json::parse(e)["choices"][0]["delta"].value("content", "");
        }
      } else {
        got = s.j["choices"][0]["message"]["content"];
      }
      EXPECT_EQ(got, want2) << "stop '" << across << "'";
    }
  }
  // A stop string (as a plain string) that never occurs changes nothing.
  json req = sampled_chat(msgs, 32);
  req["stop"] = "\x01never\x02";
  const Reply r = post("/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["choices"][0]["message"]["content"], text);
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], full.j["choices"][0]["finish_reason"]);
}

TEST_F(Serve, BadRequestsAreJson400sAndTheServerKeepsServing) {
  const json ok_msgs = json::array({user("hi")});
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/v1/chat/completions", "{not json"},
      {"/v1/chat/completions", "[1, 2]"},
      {"/v1/chat/completions", "{}"},
      {"/v1/chat/completions", R"({"messages": "hi"})"},
      {"/v1/chat/completions", R"({"messages": []})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}]})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})"},
      {"/v1/chat/completions", R"({"messages": [{"role": 7, "content": "x"}]})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 7}]})"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})"},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"temperature", "hot"}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"temperature", -1}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"max_tokens", "5"}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"max_tokens", 0}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"top_k", 1.5}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"stop", 5}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"stop", {"a", 1}}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"stream", "yes"}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"n", 2}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"frequency_penalty", 0.5}}.dump()},
      {"/v1/chat/completions", json{{"messages", ok_msgs}, {"seed", "x"}}.dump()},
      {"/v1/chat/completions",
       json{{"messages", json::array({user(std::string(6000, 'x') + " y z")})}}.dump()},
      {"/v1/completions", "{}"},
      {"/v1/completions", R"({"prompt": 5})"},
      {"/v1/completions", R"({"prompt": [1, -2]})"},
  };
  for (const auto& [path, body] : bad) {
    SCOPED_TRACE(path + " " + body.substr(0, 120));
    const Reply r = post_raw(path, body);
    EXPECT_EQ(r.status, 400) << r.body;
    ASSERT_TRUE(r.j.is_object()) << r.body;
    ASSERT_TRUE(r.j.contains("error")) << r.body;
    EXPECT_TRUE(r.j["error"]["message"].is_string());
    EXPECT_FALSE(r.j["error"]["message"].get<std::string>().empty());
    EXPECT_EQ(r.j["error"]["type"], "invalid_request_error");
    EXPECT_TRUE(r.j["error"].contains("code"));
  }
  const Reply nf = get("/v1/nothing-here");
  EXPECT_EQ(nf.status, 404);
  EXPECT_TRUE(nf.j.contains("error")) << nf.body;
  // Still serving.
  EXPECT_EQ(get("/health").status, 200);
  const Reply r = post("/v1/chat/completions", greedy_chat(ok_msgs, 3));
  EXPECT_EQ(r.status, 200) << r.body << server_log();
}

TEST_F(Serve, PrefixReuseEqualsAColdCache) {
  const json first = json::array({user("hello world")});
  const Reply r1 = post("/v1/chat/completions", sampled_chat(first, 8));
  ASSERT_EQ(r1.status, 200) << r1.body;
  const int prompt1 = r1.j["usage"]["prompt_tokens"];
  json second = first;
  second.push_back({{"role", "assistant"}, {"content", r1.j["choices"][0]["message"]["content"]}});
  second.push_back(user("and then?"));

  // Warm: the conversation so far is in the cache.
  const Reply warm = post("/v1/chat/completions", sampled_chat(second, 8));
  ASSERT_EQ(warm.status, 200) << warm.body;
  const int cached = warm.j["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GE(cached, prompt1);
  EXPECT_LT(cached, warm.j["usage"]["prompt_tokens"].get<int>());

  // Cold: the same request evaluating the whole prompt.
  json cold_req = sampled_chat(second, 8);
  cold_req["cache_prompt"] = false;
  const Reply cold = post("/v1/chat/completions", cold_req);
  ASSERT_EQ(cold.status, 200) << cold.body;
  EXPECT_EQ(cold.j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(warm.j["choices"][0]["message"]["content"], cold.j["choices"][0]["message"]["content"]);
  EXPECT_EQ(warm.j["usage"]["completion_tokens"], cold.j["usage"]["completion_tokens"]);
  EXPECT_EQ(warm.j["usage"]["prompt_tokens"], cold.j["usage"]["prompt_tokens"]);

  // The same prompt again: everything but the last prompt token comes from the cache.
  const Reply again = post("/v1/chat/completions", sampled_chat(second, 8));
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.j["usage"]["prompt_tokens_details"]["cached_tokens"],
            again.j["usage"]["prompt_tokens"].get<int>() - 1);
  EXPECT_EQ(again.j["choices"][0]["message"]["content"],
            cold.j["choices"][0]["message"]["content"]);
}

TEST_F(Serve, ConcurrentRequestsAreServedOneAtATime) {
  // Four clients at once (streaming and not) get what one client alone gets.
  json req = sampled_chat(json::array({user("one at a time")}), 12, 3);
  req["cache_prompt"] = false;
  const Reply alone = post("/v1/chat/completions", req);
  ASSERT_EQ(alone.status, 200) << alone.body;
  const std::string want = alone.j["choices"][0]["message"]["content"];
  std::vector<std::string> got(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      json q = req;
      q["stream"] = i % 2 == 1;
      const Reply r = post("/v1/chat/completions", q);
      if (r.status != 200) return;
      if (i % 2 == 0) {
        got[i] = r.j["choices"][0]["message"]["content"];
      } else {
        for (const std::string& e : events(r.body)) {
          if (e != "[DONE]") got[i] += json::parse(e)["choices"][0]["delta"].value("content", "");
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], want) << "client " << i;
}

TEST_F(Serve, SeededSamplingIsReproducible) {
  json req = {{"messages", json::array({user("roll the dice")})},
              {"temperature", 1.0},
              {"top_k", 0},
              {"max_tokens", 10},
              {"seed", 42}};
  const Reply a = post("/v1/chat/completions", req);
  req["cache_prompt"] = false;
  const Reply b = post("/v1/chat/completions", req);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.j["choices"][0]["message"]["content"], b.j["choices"][0]["message"]["content"]);
}

// `serve --draft`: speculative decoding gives what `run --draft` gives (same seed), and greedy
// output equal to plain greedy decoding.
TEST(ServeDraft, SpeculativeEqualsRunDraftAndPlainGreedy) {
  if (!std::ifstream(kBin).good()) GTEST_SKIP() << kBin << " is not built";
  std::system(("mkdir -p " + kDir).c_str());
  const std::string target = kDir + "/tiny_q8_0.gguf", draft = kDir + "/tiny-assistant.gguf";
  ASSERT_EQ(testing_util::sh(kBin + " synth -o " + target + " --preset tiny --type q8_0").status,
            0);
  ASSERT_EQ(
      testing_util::sh(kBin + " synth -o " + draft + " --preset tiny-assistant --type q8_0").status,
      0);
  ServerProcess srv;
  srv.start(kDir + "/serve_draft.log", {"-m", target, "--ctx", kCtx, "--draft", draft});
  ASSERT_TRUE(srv.error.empty()) << srv.error;
  const int n = 16;
  // greedy, sampled, sampled with a repetition penalty (its history must be the whole prompt's
  // also when the prompt comes from the cache).
  for (const int mode : {0, 1, 2}) {
    const bool greedy = mode == 0;
    SCOPED_TRACE(mode == 0 ? "greedy" : mode == 1 ? "sampled" : "repeat penalty");
    const json messages = json::array({user("hello world")});
    json req = greedy ? greedy_chat(messages, n) : sampled_chat(messages, n, 5);
    if (mode == 2) req["repeat_penalty"] = 1.5;
    const Reply r = post_raw(srv.port, "/v1/chat/completions", req.dump());
    ASSERT_EQ(r.status, 200) << r.body << srv.read_log();
    const std::string content = r.j["choices"][0]["message"]["content"];
    const std::string common = "-m " + target + " -p 'hello world' -t 2 --backend cpu --ctx " +
                               std::string(kCtx) + " -n " + std::to_string(n) +
                               (greedy ? " --temp 0" : " --temp 1 --top-k 0 --top-p 1 --seed 5") +
                               (mode == 2 ? " --repeat-penalty 1.5" : "");
    const RunOutput spec = run_cli(common + " --draft " + draft);
    ASSERT_FALSE(spec.ids.empty()) << spec.raw;
    EXPECT_EQ(content, spec.text);
    EXPECT_EQ(r.j["usage"]["completion_tokens"], spec.ids.size());
    if (greedy) {
      const RunOutput plain = run_cli(common);
      EXPECT_EQ(content, plain.text);
    }
    // Again with the prompt cached: same answer.
    const Reply again = post_raw(srv.port, "/v1/chat/completions", req.dump());
    ASSERT_EQ(again.status, 200) << again.body;
    const int cached = again.j["usage"]["prompt_tokens_details"]["cached_tokens"];
    const int prompt = again.j["usage"]["prompt_tokens"];
    // The reused prefix also feeds the repetition penalty's history (mode 2: the same answer).
    EXPECT_EQ(cached, prompt - 1);
    EXPECT_EQ(again.j["choices"][0]["message"]["content"], content);
  }
  srv.stop();
}

#endif  // QGEMMA_HAVE_HTTPLIB

}  // namespace
}  // namespace qgemma
