// Helpers for the GGUF tests: a raw GGUF byte builder that can write any (also malformed) header,
// and a temporary directory. Header-only, shared by tests/loader/test_gguf*.cpp.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace qgemma::testing {

// Little-endian encoders of GGUF primitives.
inline std::string enc_u32(uint32_t x) { return std::string(reinterpret_cast<char*>(&x), 4); }
inline std::string enc_u64(uint64_t x) { return std::string(reinterpret_cast<char*>(&x), 8); }
inline std::string enc_str(const std::string& s) { return enc_u64(s.size()) + s; }

// One encoded metadata entry: key, value type, value bytes.
inline std::string kv_raw(const std::string& key, uint32_t type, const std::string& value) {
  return enc_str(key) + enc_u32(type) + value;
}
inline std::string kv_u32(const std::string& key, uint32_t v) { return kv_raw(key, 4, enc_u32(v)); }
inline std::string kv_str(const std::string& key, const std::string& v) {
  return kv_raw(key, 8, enc_str(v));
}

struct RawTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;  // f32
  uint64_t offset = 0;
  std::optional<uint32_t> n_dims = std::nullopt;  // written instead of dims.size() when set
};

// A GGUF file assembled field by field, so a test can corrupt any one of them.
struct RawFile {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors;  // written instead of tensors.size() when set
  std::optional<uint64_t> n_kv;       // written instead of kvs.size() when set
  std::vector<std::string> kvs;       // encoded entries (kv_raw and friends)
  std::vector<RawTensor> tensors;
  uint64_t alignment = 32;  // padding before the data section
  uint64_t data_bytes = 0;  // bytes of data section (filled with a pattern)

  std::string bytes() const {
    std::string b = magic + enc_u32(version);
    b += enc_u64(n_tensors.value_or(tensors.size()));
    b += enc_u64(n_kv.value_or(kvs.size()));
    for (const auto& kv : kvs) b += kv;
    for (const auto& t : tensors) {
      b += enc_str(t.name) + enc_u32(t.n_dims.value_or(static_cast<uint32_t>(t.dims.size())));
      for (uint64_t d : t.dims) b += enc_u64(d);
      b += enc_u32(t.type) + enc_u64(t.offset);
    }
    b.resize((b.size() + alignment - 1) / alignment * alignment, '\0');
    for (uint64_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<char>(i * 7));
    return b;
  }
};

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qgemma_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace qgemma::testing
