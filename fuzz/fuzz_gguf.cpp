// libFuzzer target for the GGUF reader: any input must either parse or throw qgemma::Error,
// never crash, leak or read outside the input (ASan + UBSan). The input is parsed from a heap
// buffer of exactly its size, so a read past its end is caught.
//   fuzz/fuzz_gguf -max_total_time=60 -max_len=65536 CORPUS_DIR fuzz/seeds
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

#include "loader/gguf.h"

namespace {

// Walks a parsed value so that every string and nested item is touched.
size_t walk(const qgemma::GgufValue& v) {
  if (const auto* s = std::get_if<std::string>(&v.v)) return s->size();
  if (const auto* a = std::get_if<qgemma::GgufValue::Array>(&v.v)) {
    size_t n = a->items.size();
    for (const auto& item : a->items) n += walk(item);
    return n;
  }
  return 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = qgemma::GgufFile::parse("fuzz.gguf", std::span<const uint8_t>(data, size));
    volatile size_t sink = 0;
    for (const auto& kv : f->metadata()) sink = sink + walk(kv.value);
    for (const auto& t : f->tensors()) {
      // Every tensor's bytes lie inside the input: touch the first and the last one.
      sink = sink + t.data[0] + t.data[t.nbytes - 1] + static_cast<size_t>(t.n_elements());
    }
    // Typed getters on whatever keys the input has must throw Error, not crash.
    for (const auto& kv : f->metadata()) {
      try {
        sink = sink + static_cast<size_t>(f->get_int(kv.key));
      } catch (const qgemma::Error&) {
      }
      try {
        sink = sink + f->get_int_or_array(kv.key, 4).size();
      } catch (const qgemma::Error&) {
      }
      try {
        sink = sink + f->get_string_array(kv.key).size();
      } catch (const qgemma::Error&) {
      }
    }
  } catch (const qgemma::Error&) {
  }
  return 0;
}
