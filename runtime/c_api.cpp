// The C API (include/qgemma/qgemma.h) over Model, Session and Tokenizer.
#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>

#include "loader/tokenizer.h"
#include "qgemma/qgemma.h"
#include "runtime/session.h"

struct qgemma_model {
  std::unique_ptr<qgemma::Model> model;
  std::unique_ptr<qgemma::Tokenizer> tokenizer;
};

struct qgemma_session {
  std::unique_ptr<qgemma::Session> session;
};

namespace {

thread_local std::string g_last_error;

// Runs fn, turning exceptions into QGEMMA_ERROR with the message kept for qgemma_last_error().
template <typename Fn>
qgemma_status guarded(Fn&& fn) {
  try {
    g_last_error.clear();
    return fn();
  } catch (const std::exception& e) {
    g_last_error = e.what();
  } catch (...) {
    g_last_error = "unknown error";
  }
  return QGEMMA_ERROR;
}

qgemma_status invalid(const char* what) {
  g_last_error = std::string("invalid argument: ") + what;
  return QGEMMA_INVALID_ARG;
}

}  // namespace

extern "C" {

qgemma_session_params qgemma_session_default_params(void) {
  const qgemma::SessionOptions d;
  qgemma_session_params p;
  p.n_ctx = d.n_ctx;
  p.n_batch = d.n_batch;
  p.n_threads = d.n_threads;
  p.kv_q8 = 0;
  p.mem_budget = d.mem_budget;
  return p;
}

const char* qgemma_last_error(void) { return g_last_error.c_str(); }

qgemma_status qgemma_model_load(const char* path, qgemma_model** out) {
  if (!path || !out) return invalid("path and out must not be null");
  return guarded([&] {
    auto m = std::make_unique<qgemma_model>();
    m->model = qgemma::Model::load(path);
    m->tokenizer =
        std::make_unique<qgemma::Tokenizer>(qgemma::Tokenizer::from_gguf(m->model->file()));
    *out = m.release();
    return QGEMMA_OK;
  });
}

void qgemma_model_free(qgemma_model* model) { delete model; }

int64_t qgemma_model_n_vocab(const qgemma_model* model) {
  return model ? model->model->config().n_vocab : 0;
}

qgemma_status qgemma_tokenize(const qgemma_model* model, const char* text, int32_t* ids,
                              size_t capacity, size_t* n_out) {
  if (!model || !text || !n_out || (!ids && capacity)) return invalid("null pointer");
  return guarded([&] {
    const auto v = model->tokenizer->encode(text, model->tokenizer->add_bos(), true);
    *n_out = v.size();
    std::memcpy(ids, v.data(), std::min(capacity, v.size()) * sizeof(int32_t));
    return v.size() > capacity ? QGEMMA_BUFFER_SMALL : QGEMMA_OK;
  });
}

qgemma_status qgemma_detokenize(const qgemma_model* model, const int32_t* ids, size_t n_ids,
                                char* text, size_t capacity, size_t* n_out) {
  if (!model || (!ids && n_ids) || !n_out || (!text && capacity)) return invalid("null pointer");
  return guarded([&] {
    const std::string s = model->tokenizer->decode(std::span<const int32_t>(ids, n_ids));
    *n_out = s.size();
    if (capacity == 0) return QGEMMA_BUFFER_SMALL;
    const size_t n = std::min(capacity - 1, s.size());
    std::memcpy(text, s.data(), n);
    text[n] = '\0';
    return s.size() + 1 > capacity ? QGEMMA_BUFFER_SMALL : QGEMMA_OK;
  });
}

qgemma_status qgemma_session_new(const qgemma_model* model, const qgemma_session_params* params,
                                 qgemma_session** out) {
  if (!model || !out) return invalid("model and out must not be null");
  return guarded([&] {
    const qgemma_session_params p = params ? *params : qgemma_session_default_params();
    qgemma::SessionOptions o;
    o.n_ctx = p.n_ctx;
    o.n_batch = p.n_batch;
    o.n_threads = p.n_threads;
    o.kv_type = p.kv_q8 ? qgemma::TensorType::Q8_0 : qgemma::TensorType::F16;
    o.mem_budget = p.mem_budget;
    auto s = std::make_unique<qgemma_session>();
    s->session = std::make_unique<qgemma::Session>(*model->model, o);
    *out = s.release();
    return QGEMMA_OK;
  });
}

void qgemma_session_free(qgemma_session* session) { delete session; }

qgemma_status qgemma_session_eval(qgemma_session* session, const int32_t* tokens, size_t n,
                                  const float** logits) {
  if (!session || !tokens || n == 0 || !logits) return invalid("null pointer or no tokens");
  return guarded([&] {
    *logits = session->session->eval(std::span<const int32_t>(tokens, n), 1).data();
    return QGEMMA_OK;
  });
}

int64_t qgemma_session_n_past(const qgemma_session* session) {
  return session ? session->session->n_past() : 0;
}

qgemma_status qgemma_session_crop(qgemma_session* session, int64_t n) {
  if (!session) return invalid("null session");
  return guarded([&] {
    session->session->crop(n);
    return QGEMMA_OK;
  });
}

}  // extern "C"
