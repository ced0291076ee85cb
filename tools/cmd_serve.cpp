// qgemma serve: an OpenAI-compatible HTTP server (POST /v1/chat/completions, POST
// /v1/completions, GET /v1/models, GET /health) on one model and one Session. Requests run one
// at a time; the KV cache keeps the tokens of the last request, and a new prompt that starts
// with them only evaluates the rest (multi-turn chat re-sends the whole conversation). See
// docs/server.md.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "loader/chat_template.h"
#include "loader/error.h"
#include "loader/tokenizer.h"
#include "runtime/sampling.h"
#include "runtime/session.h"
#include "tools/command.h"
#include "tools/draft_options.h"
#include "tools/run_options.h"
#include "tools/serve_stop.h"

#if defined(QGEMMA_HAVE_HTTPLIB)
#include <httplib.h>
#endif

namespace qgemma {
namespace {

using json = nlohmann::json;

struct ServeCmd {
  ModelOptions model;
  SamplingOptions sampling;
  DraftOptions draft;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string alias;        // the model id clients see (default: the file name without .gguf)
  bool seed_given = false;  // --seed on the command line: the default seed of every request
};

// ---------------------------------------------------------------------------------------------
// Requests

// An OpenAI-style error: HTTP status, message, type ("invalid_request_error", "server_error",
// "not_found_error"), the offending parameter and a code.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& msg, std::string type, std::string param = {},
           std::string code = {})
      : std::runtime_error(msg),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

[[noreturn]] void bad_request(const std::string& msg, const std::string& param = {},
                              const std::string& code = {}) {
  throw ApiError(400, msg, "invalid_request_error", param, code);
}

json error_body(const std::string& msg, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", msg},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

// The field, or nullptr when absent or null (null means "default" in OpenAI's API).
const json* field(const json& body, const char* key) {
  const auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> get_number(const json& body, const char* key, double lo, double hi) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(std::string("'") + key + "' must be a number", key);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) {
    bad_request(std::string("'") + key + "' must be in [" + json(lo).dump() + ", " +
                    json(hi).dump() + "], got " + v->dump(),
                key);
  }
  return x;
}

std::optional<int64_t> get_int(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad_request(std::string("'") + key + "' must be an integer", key);
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : v->get<int64_t>();
  if (x < lo || x > hi) {
    bad_request(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "], got " + v->dump(),
                key);
  }
  return x;
}

std::optional<bool> get_bool(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_request(std::string("'") + key + "' must be a boolean", key);
  return v->get<bool>();
}

// What one request asks the engine for.
struct GenRequest {
  std::vector<int32_t> prompt;
  SamplingParams sp;
  int64_t max_tokens = -1;  // < 0: until a stop or the end of the context
  std::vector<std::string> stop;
  bool cache_prompt = true;  // reuse the KV cache's common prefix (llama-server's field)
};

struct GenOptions {
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// The sampling fields shared by both endpoints, over the server's defaults.
void parse_sampling(const json& body, const ServeCmd& cmd, GenRequest& r, GenOptions& g) {
  SamplingParams& sp = r.sp;
  sp = cmd.sampling.p;
  if (!cmd.seed_given) sp.seed = std::random_device{}() * 0x100000001ull ^ std::random_device{}();
  if (auto v = get_number(body, "temperature", 0, 100)) sp.temperature = float(*v);
  if (auto v = get_number(body, "top_p", 0, 1)) sp.top_p = float(*v);
  if (auto v = get_int(body, "top_k", -1, INT32_MAX)) sp.top_k = int32_t(*v);
  if (auto v = get_number(body, "min_p", 0, 1)) sp.min_p = float(*v);
  if (auto v = get_number(body, "repeat_penalty", 0.01, 100)) sp.repeat_penalty = float(*v);
  if (auto v = get_number(body, "repetition_penalty", 0.01, 100)) sp.repeat_penalty = float(*v);
  if (auto v = get_int(body, "repeat_last_n", 0, 1 << 20)) sp.repeat_last_n = int32_t(*v);
  for (const char* k : {"frequency_penalty", "presence_penalty"}) {
    if (auto v = get_number(body, k, -2, 2); v && *v != 0) {
      bad_request(std::string("'") + k +
                      "' is not supported (the sampler has a repetition penalty: use "
                      "'repeat_penalty', e.g. 1.1)",
                  k, "unsupported_parameter");
    }
  }
  if (const json* v = field(body, "seed")) {
    if (!v->is_number_integer()) bad_request("'seed' must be an integer", "seed");
    if (v->is_number_unsigned() || v->get<int64_t>() >= 0) sp.seed = v->get<uint64_t>();
  }
  // max_tokens (legacy), max_completion_tokens (current), n_predict (llama-server); -1: no limit.
  for (const char* k : {"max_tokens", "max_completion_tokens", "n_predict"}) {
    if (auto v = get_int(body, k, -1, INT32_MAX)) {
      if (*v == 0) bad_request(std::string("'") + k + "' must be at least 1", k);
      r.max_tokens = *v;
    }
  }
  if (const json* v = field(body, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 16) bad_request("'stop' has more than 16 strings", "stop");
      for (const json& s : *v) {
        if (!s.is_string()) bad_request("'stop' must be a string or an array of strings", "stop");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      bad_request("'stop' must be a string or an array of strings", "stop");
    }
  }
  if (auto v = get_int(body, "n", 1, INT32_MAX); v && *v != 1) {
    bad_request("'n' must be 1 (one choice per request)", "n", "unsupported_parameter");
  }
  if (auto v = get_int(body, "best_of", 1, INT32_MAX); v && *v != 1) {
    bad_request("'best_of' must be 1", "best_of", "unsupported_parameter");
  }
  if (const json* v = field(body, "logprobs")) {
    if (!(v->is_boolean() && !v->get<bool>()))
      bad_request("'logprobs' is not supported", "logprobs", "unsupported_parameter");
  }
  if (const json* v = field(body, "logit_bias")) {
    if (!v->is_object()) bad_request("'logit_bias' must be an object", "logit_bias");
    if (!v->empty())
      bad_request("'logit_bias' is not supported", "logit_bias", "unsupported_parameter");
  }
  if (auto v = get_bool(body, "stream")) g.stream = *v;
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) bad_request("'stream_options' must be an object", "stream_options");
    if (auto u = get_bool(*v, "include_usage")) g.include_usage = *u;
  }
  if (auto v = get_bool(body, "cache_prompt")) r.cache_prompt = *v;
  if (const json* v = field(body, "model"); v && !v->is_string()) {
    bad_request("'model' must be a string", "model");
  }
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_text(const json& content, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request("'" + param + "' must be a string or an array", param);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      bad_request("each part of '" + param + "' must be an object with a 'type'", param);
    }
    if (part["type"] != "text") {
      bad_request("content parts of type '" + part["type"].get<std::string>() +
                      "' are not supported (text only)",
                  param, "unsupported_content");
    }
    if (!part.contains("text") || !part["text"].is_string())
      bad_request("a text part of '" + param + "' needs a string 'text'", param);
    text += part["text"].get<std::string>();
  }
  return text;
}

std::string chat_prompt_text(const json& body) {
  const json* msgs = field(body, "messages");
  if (!msgs) bad_request("'messages' is required", "messages");
  if (!msgs->is_array()) bad_request("'messages' must be an array", "messages");
  if (msgs->empty()) bad_request("'messages' must not be empty", "messages");
  std::vector<ChatMessage> chat;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_request("'" + param + "' must be an object", param);
    if (!m.contains("role") || !m["role"].is_string())
      bad_request("'" + param + ".role' must be a string", param + ".role");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant") {
      bad_request("'" + param + ".role' '" + role +
                      "' is not supported (system, developer, user, assistant)",
                  param + ".role");
    }
    if (field(m, "tool_calls"))
      bad_request("tool calls are not supported", param + ".tool_calls", "unsupported_parameter");
    const json* content = field(m, "content");
    if (!content && role != "assistant")
      bad_request("'" + param + ".content' is required", param + ".content");
    chat.push_back({role, message_text(content ? *content : json(nullptr), i)});
  }
  if (const json* t = field(body, "tools"); t && !(t->is_array() && t->empty())) {
    bad_request("'tools' is not supported", "tools", "unsupported_parameter");
  }
  if (const json* f = field(body, "response_format")) {
    if (!f->is_object() || f->value("type", "") != "text") {
      bad_request("'response_format' other than {\"type\": \"text\"} is not supported",
                  "response_format", "unsupported_parameter");
    }
  }
  ChatOptions opts;
  if (const json* k = field(body, "chat_template_kwargs")) {
    if (!k->is_object()) bad_request("'chat_template_kwargs' must be an object");
    if (auto t = get_bool(*k, "enable_thinking")) opts.enable_thinking = *t;
  }
  try {
    return format_gemma4_chat(chat, opts);
  } catch (const Error& e) {
    bad_request(e.what(), "messages");
  }
}

// ---------------------------------------------------------------------------------------------
// The engine: one model, one session, one request at a time.

struct GenResult {
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double prompt_s = 0, gen_s = 0;
};

class Engine {
 public:
  explicit Engine(ServeCmd& cmd) : cmd_(cmd) {
    if (cmd.draft.enabled()) cmd.model.require_cpu("--draft (speculative decoding)");
    model_ = load_model_with_progress(cmd.model);
    tok_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(model_->file()));
    session_ = std::make_unique<Session>(*model_, cmd.model.session());
    if (cmd.draft.enabled()) {
      draft_path_ = cmd.draft.resolve(cmd.model.model);
      drafter_ = Drafter::load(draft_path_, true, cmd.draft.head_options());
      draft_src_ = std::make_unique<MtpDraftSource>(*drafter_, *model_, session_->n_threads());
      spec_opts_ = cmd.draft.options();
    }
  }

  const Tokenizer& tok() const { return *tok_; }
  int64_t n_ctx() const { return cmd_.model.ctx; }
  std::string backend_name() const { return session_->backend_name(); }
  const std::string& draft_path() const { return draft_path_; }

  // Runs one request. on_text gets each piece of text as it becomes safe to send; when it
  // returns false (the client is gone) generation stops.
  GenResult generate(const GenRequest& r, const std::function<bool(const std::string&)>& on_text) {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      return generate_locked(r, on_text);
    } catch (...) {
      // Whatever the cache holds now is unknown: start cold next time.
      cache_.clear();
      session_->reset();
      throw;
    }
  }

 private:
  using Clock = std::chrono::steady_clock;

  GenResult generate_locked(const GenRequest& r,
                            const std::function<bool(const std::string&)>& on_text) {
    const std::vector<int32_t>& prompt = r.prompt;
    GenResult res;
    res.prompt_tokens = static_cast<int64_t>(prompt.size());
    // The common prefix of the cache and the prompt stays; at least one token is evaluated
    // (its logits start the reply).
    size_t keep = 0;
    if (r.cache_prompt) {
      while (keep < cache_.size() && keep < prompt.size() && cache_[keep] == prompt[keep]) ++keep;
      keep = std::min(keep, prompt.size() - 1);
    }
    if (keep == 0) {
      session_->reset();
    } else if (static_cast<int64_t>(keep) < session_->n_past()) {
      try {
        session_->crop(static_cast<int64_t>(keep));
      } catch (const Error&) {  // a sliding layer's ring no longer holds that far back
        session_->reset();
        keep = 0;
      }
    }
    cache_.resize(keep);
    res.cached_tokens = static_cast<int64_t>(keep);
    const std::span<const int32_t> rest(prompt.data() + keep, prompt.size() - keep);

    StopFilter stop(r.stop);
    StreamingDecoder dec(*tok_);
    bool client_gone = false;
    auto send = [&](const std::string& s) {
      if (!s.empty() && !client_gone && !on_text(s)) client_gone = true;
    };
    // Handles one generated token; returns whether generation goes on.
    auto consume = [&](int32_t id) {
      ++res.completion_tokens;
      if (tok_->is_stop(id)) {
        res.finish_reason = "stop";
        return false;
      }
      send(stop.push(dec.push(id)));
      if (stop.hit()) {
        res.finish_reason = "stop";
        return false;
      }
      if (client_gone) return false;
      if (r.max_tokens >= 0 && res.completion_tokens >= r.max_tokens) {
        res.finish_reason = "length";
        return false;
      }
      return true;
    };

    auto t0 = Clock::now();
    if (draft_src_) {
      SpeculativeDecoder sd(*session_, *draft_src_, spec_opts_, r.sp);
      // The reused prefix counts in the repetition penalty's history, as without the cache.
      std::vector<int32_t> emitted{sd.start(rest, std::span<const int32_t>(prompt.data(), keep))};
      cache_.insert(cache_.end(), rest.begin(), rest.end());
      res.prompt_s = seconds_since(t0);
      t0 = Clock::now();
      size_t next = 0;
      while (true) {
        if (next == emitted.size()) {
          if (session_->n_past() >= n_ctx()) {
            res.finish_reason = "length";
            break;
          }
          const std::vector<int32_t> more = sd.step();
          emitted.insert(emitted.end(), more.begin(), more.end());
        }
        if (!consume(emitted[next++])) break;
      }
      // The cache holds every emitted token but the last (the next round's input).
      cache_.insert(cache_.end(), emitted.begin(), emitted.end());
      cache_.resize(static_cast<size_t>(session_->n_past()));
    } else {
      Sampler sampler(r.sp);
      for (int32_t id : prompt) sampler.accept(id);
      std::span<const float> logits = session_->eval(rest, 1);
      cache_.insert(cache_.end(), rest.begin(), rest.end());
      res.prompt_s = seconds_since(t0);
      t0 = Clock::now();
      while (true) {
        const int32_t id = sampler.sample(logits);
        sampler.accept(id);
        if (!consume(id)) break;
        if (session_->n_past() >= n_ctx()) {
          res.finish_reason = "length";
          break;
        }
        logits = session_->eval(std::span<const int32_t>(&id, 1), 1);
        cache_.push_back(id);
      }
    }
    if (!stop.hit()) send(stop.push(dec.flush()));
    send(stop.finish());
    res.text = stop.text();
    res.gen_s = seconds_since(t0);
    return res;
  }

  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  ServeCmd& cmd_;
  std::mutex mu_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Session> session_;
  std::vector<int32_t> cache_;  // the tokens at positions 0 .. n_past - 1 of the session
  std::string draft_path_;
  std::unique_ptr<Drafter> drafter_;
  std::unique_ptr<MtpDraftSource> draft_src_;
  SpeculativeOptions spec_opts_;
};

// ---------------------------------------------------------------------------------------------
// HTTP

#if defined(QGEMMA_HAVE_HTTPLIB)

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, error_body(e.what(), e.type, e.param, e.code));
}

json usage_json(const GenResult& g) {
  return {{"prompt_tokens", g.prompt_tokens},
          {"completion_tokens", g.completion_tokens},
          {"total_tokens", g.prompt_tokens + g.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", g.cached_tokens}}}};
}

class Server {
 public:
  Server(ServeCmd& cmd, Engine& engine) : cmd_(cmd), engine_(engine) {
    model_id_ =
        cmd.alias.empty() ? std::filesystem::path(cmd.model.model).stem().string() : cmd.alias;
    created_ = std::time(nullptr);
  }

  int run() {
    httplib::Server svr;
    svr.set_tcp_nodelay(true);
    svr.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
    svr.Options(R"(/.*)", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization");
      res.status = 204;
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "ok"}});
    });
    auto models = [this](const httplib::Request&, httplib::Response& res) {
      send_json(
          res, 200,
          {{"object", "list"},
           {"data",
            {{{"id", model_id_},
              {"object", "model"},
              {"created", created_},
              {"owned_by", "qgemma"},
              {"meta", {{"n_ctx", engine_.n_ctx()}, {"backend", engine_.backend_name()}}}}}}});
    };
    svr.Get("/v1/models", models);
    svr.Get("/models", models);
    auto chat = [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, true);
    };
    auto completions = [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, false);
    };
    svr.Post("/v1/chat/completions", chat);
    svr.Post("/chat/completions", chat);
    svr.Post("/v1/completions", completions);
    svr.Post("/completions", completions);
    svr.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          if (res.status == 404) {
            send_json(res, 404,
                      error_body("no route " + req.method + " " + req.path, "not_found_error", "",
                                 "not_found"));
          } else {
            send_json(res, res.status,
                      error_body("HTTP error " + std::to_string(res.status),
                                 "invalid_request_error", "", ""));
          }
          return httplib::Server::HandlerResponse::Handled;
        }));
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string msg = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            msg = e.what();
          } catch (...) {
          }
          send_json(res, 500, error_body(msg, "server_error", "", ""));
        });

    int port = cmd_.port;
    if (port == 0) {
      port = svr.bind_to_any_port(cmd_.host);
      if (port < 0) throw Error("serve: cannot bind to " + cmd_.host);
    } else if (!svr.bind_to_port(cmd_.host, port)) {
      throw Error("serve: cannot listen on " + cmd_.host + ":" + std::to_string(port) +
                  " (in use? try --port 0 for any free port)");
    }
    std::fprintf(stderr, "qgemma serve: model '%s' (%s, ctx %lld%s%s)\n", model_id_.c_str(),
                 engine_.backend_name().c_str(), static_cast<long long>(engine_.n_ctx()),
                 engine_.draft_path().empty() ? "" : ", speculative with ",
                 engine_.draft_path().c_str());
    std::fprintf(stderr, "qgemma serve: listening on http://%s:%d\n", cmd_.host.c_str(), port);
    std::fflush(stderr);
    if (!svr.listen_after_bind()) throw Error("serve: the server stopped with an error");
    return 0;
  }

 private:
  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    const auto t0 = std::chrono::steady_clock::now();
    GenRequest r;
    GenOptions g;
    try {
      json body;
      try {
        body = json::parse(req.body);
      } catch (const json::exception& e) {
        bad_request(std::string("the body is not valid JSON: ") + e.what());
      }
      if (!body.is_object()) bad_request("the body must be a JSON object");
      parse_sampling(body, cmd_, r, g);
      const Tokenizer& tok = engine_.tok();
      if (chat) {
        r.prompt = tok.encode(chat_prompt_text(body), tok.add_bos(), /*parse_special=*/true);
      } else {
        r.prompt = completion_prompt(body, tok);
      }
      if (r.prompt.empty()) bad_request("the prompt has no tokens", chat ? "messages" : "prompt");
      if (static_cast<int64_t>(r.prompt.size()) >= engine_.n_ctx()) {
        bad_request("the prompt has " + std::to_string(r.prompt.size()) +
                        " tokens; the context holds " + std::to_string(engine_.n_ctx()) +
                        " (start the server with a larger --ctx)",
                    chat ? "messages" : "prompt", "context_length_exceeded");
      }
    } catch (const ApiError& e) {
      send_error(res, e);
      log(req, e.status, nullptr, t0);
      return;
    } catch (const std::exception& e) {  // e.g. a json type error in a nested field
      send_error(res, ApiError(400, e.what(), "invalid_request_error"));
      log(req, 400, nullptr, t0);
      return;
    }

    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(created_) + "-" +
                           std::to_string(++counter_);
    const int64_t created = std::time(nullptr);
    if (!g.stream) {
      GenResult out;
      try {
        out = engine_.generate(r, [](const std::string&) { return true; });
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what(), "server_error"));
        log(req, 500, nullptr, t0);
        return;
      }
      json choice = chat ? json{{"index", 0},
                                {"message", {{"role", "assistant"}, {"content", out.text}}},
                                {"logprobs", nullptr},
                                {"finish_reason", out.finish_reason}}
                         : json{{"index", 0},
                                {"text", out.text},
                                {"logprobs", nullptr},
                                {"finish_reason", out.finish_reason}};
      send_json(res, 200,
                {{"id", id},
                 {"object", chat ? "chat.completion" : "text_completion"},
                 {"created", created},
                 {"model", model_id_},
                 {"system_fingerprint", "qgemma"},
                 {"choices", json::array({choice})},
                 {"usage", usage_json(out)}});
      log(req, 200, &out, t0);
      return;
    }

    // Server-Sent Events: one `data: {chunk}` per piece of text, a final chunk with the
    // finish_reason, optionally a usage chunk, then `data: [DONE]`.
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, r = std::move(r), g, id, created, chat, t0, req_line = req.method + " " + req.path](
            size_t, httplib::DataSink& sink) {
          auto event = [&](const json& j) {
            const std::string s = "data: " + dump(j) + "\n\n";
            return sink.write(s.data(), s.size());
          };
          auto chunk = [&](json delta, json finish) {
            json c = chat ? json{{"index", 0},
                                 {"delta", std::move(delta)},
                                 {"logprobs", nullptr},
                                 {"finish_reason", std::move(finish)}}
                          : json{{"index", 0},
                                 {"text", delta.value("content", "")},
                                 {"logprobs", nullptr},
                                 {"finish_reason", std::move(finish)}};
            return json{{"id", id},
                        {"object", chat ? "chat.completion.chunk" : "text_completion"},
                        {"created", created},
                        {"model", model_id_},
                        {"system_fingerprint", "qgemma"},
                        {"choices", json::array({std::move(c)})}};
          };
          int status = 200;
          GenResult out;
          try {
            bool ok = !chat || event(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
            if (ok) {
              out = engine_.generate(r, [&](const std::string& text) {
                return event(chunk({{"content", text}}, nullptr));
              });
              ok = event(chunk(json::object(), out.finish_reason));
              if (ok && g.include_usage) {
                json u = chunk(json::object(), nullptr);
                u["choices"] = json::array();
                u["usage"] = usage_json(out);
                ok = event(u);
              }
            }
            if (ok) {
              const std::string done = "data: [DONE]\n\n";
              sink.write(done.data(), done.size());
            }
          } catch (const std::exception& e) {
            status = 500;
            event(error_body(e.what(), "server_error", "", ""));
          }
          sink.done();
          log_line(req_line, status, status == 200 ? &out : nullptr, t0, true);
          return true;
        });
  }

  // /v1/completions' prompt: a string, an array of one string, or an array of token ids.
  static std::vector<int32_t> completion_prompt(const json& body, const Tokenizer& tok) {
    const json* p = field(body, "prompt");
    if (!p) bad_request("'prompt' is required", "prompt");
    if (const json* e = field(body, "echo"); e && !(e->is_boolean() && !e->get<bool>()))
      bad_request("'echo' is not supported", "echo", "unsupported_parameter");
    if (const json* s = field(body, "suffix");
        s && !(s->is_string() && s->get<std::string>() == ""))
      bad_request("'suffix' is not supported", "suffix", "unsupported_parameter");
    const json* text = p;
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) text = &(*p)[0];
    if (text->is_string()) return tok.encode(text->get<std::string>(), tok.add_bos(), true);
    if (p->is_array() && !p->empty()) {
      std::vector<int32_t> ids;
      for (const json& v : *p) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.n_tokens())
          bad_request("'prompt' must be a string, an array of one string or an array of token ids",
                      "prompt");
        ids.push_back(v.get<int32_t>());
      }
      return ids;
    }
    bad_request("'prompt' must be a string, an array of one string or an array of token ids",
                "prompt");
  }

  void log(const httplib::Request& req, int status, const GenResult* g,
           std::chrono::steady_clock::time_point t0) {
    log_line(req.method + " " + req.path, status, g, t0, false);
  }
  static void log_line(const std::string& what, int status, const GenResult* g,
                       std::chrono::steady_clock::time_point t0, bool stream) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (g) {
      std::fprintf(
          stderr,
          "%s %d%s: prompt %lld tokens (%lld cached, %.2f s) + %lld tokens (%.2f t/s), "
          "%s, %.2f s\n",
          what.c_str(), status, stream ? " stream" : "", static_cast<long long>(g->prompt_tokens),
          static_cast<long long>(g->cached_tokens), g->prompt_s,
          static_cast<long long>(g->completion_tokens),
          g->gen_s > 0 ? g->completion_tokens / g->gen_s : 0.0, g->finish_reason.c_str(), s);
    } else {
      std::fprintf(stderr, "%s %d\n", what.c_str(), status);
    }
  }

  ServeCmd& cmd_;
  Engine& engine_;
  std::string model_id_;
  int64_t created_ = 0;
  std::atomic<int64_t> counter_{0};
};

int run_serve(ServeCmd& cmd) {
  Engine engine(cmd);
  Server server(cmd, engine);
  return server.run();
}

#else

int run_serve(ServeCmd&) {
  throw Error(
      "serve: this qgemma was built without cpp-httplib; install libcpp-httplib-dev "
      "(scripts/install-deps.sh) and rebuild");
}

#endif

const bool registered = register_command(
    "serve", "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models)",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<ServeCmd>();
      cmd->model.add(app);
      cmd->sampling.add(app);
      cmd->draft.add(app);
      app.add_option("--host", cmd->host, "address to listen on")->capture_default_str();
      app.add_option("--port", cmd->port, "port (0: any free port)")->capture_default_str();
      app.add_option("--alias", cmd->alias, "model id reported to clients (default: file stem)");
      CLI::Option* seed = app.get_option("--seed");
      run = [cmd, seed] {
        cmd->seed_given = seed->count() > 0;
        return run_serve(*cmd);
      };
    });

}  // namespace
}  // namespace qgemma
