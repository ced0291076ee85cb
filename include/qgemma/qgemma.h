/* qgemma C API: load a Gemma 4 GGUF, tokenize, evaluate tokens, read logits. Opaque handles,
 * plain structs, error codes; the message of the last error of the calling thread is available
 * from qgemma_last_error(). Implemented in runtime/c_api.cpp. */
#ifndef QGEMMA_QGEMMA_H
#define QGEMMA_QGEMMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qgemma_status {
  QGEMMA_OK = 0,
  QGEMMA_ERROR = 1,        /* see qgemma_last_error() */
  QGEMMA_INVALID_ARG = 2,  /* a null handle or pointer, a negative size */
  QGEMMA_BUFFER_SMALL = 3, /* the output buffer is too small; *n_out holds the size needed */
} qgemma_status;

typedef struct qgemma_model qgemma_model;
typedef struct qgemma_session qgemma_session;

typedef struct qgemma_session_params {
  int64_t n_ctx;       /* positions (default 32768, max 262144) */
  int64_t n_batch;     /* prompt tokens per forward pass (default 512) */
  int32_t n_threads;   /* <= 0: all cores */
  int32_t kv_q8;       /* 1: Q8_0 KV cache, 0: F16 */
  uint64_t mem_budget; /* bytes (default 16 GiB) */
} qgemma_session_params;

/* The defaults listed above. */
qgemma_session_params qgemma_session_default_params(void);

/* Thread-local message of the last failed call ("" when none). */
const char* qgemma_last_error(void);

qgemma_status qgemma_model_load(const char* path, qgemma_model** out);
void qgemma_model_free(qgemma_model* model);
int64_t qgemma_model_n_vocab(const qgemma_model* model);

/* Text -> token ids (with <bos> when the model wants it; control tokens in the text are parsed).
 * Writes up to capacity ids; *n_out is the number of ids of the text. */
qgemma_status qgemma_tokenize(const qgemma_model* model, const char* text, int32_t* ids,
                              size_t capacity, size_t* n_out);
/* Token ids -> UTF-8 text (control tokens dropped). Writes up to capacity bytes plus a NUL;
 * *n_out is the length of the text. */
qgemma_status qgemma_detokenize(const qgemma_model* model, const int32_t* ids, size_t n_ids,
                                char* text, size_t capacity, size_t* n_out);

qgemma_status qgemma_session_new(const qgemma_model* model, const qgemma_session_params* params,
                                 qgemma_session** out);
void qgemma_session_free(qgemma_session* session);
/* Evaluates n tokens after the session's current position; *logits points at the n_vocab logits
 * of the last token (valid until the next call on this session). */
qgemma_status qgemma_session_eval(qgemma_session* session, const int32_t* tokens, size_t n,
                                  const float** logits);
int64_t qgemma_session_n_past(const qgemma_session* session);
/* Forgets positions >= n (rejected speculative drafts, or a new conversation with n = 0). */
qgemma_status qgemma_session_crop(qgemma_session* session, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* QGEMMA_QGEMMA_H */
