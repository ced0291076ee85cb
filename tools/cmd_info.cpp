// `qgemma info FILE [--ctx N] [--tensors] [--json]`: what a GGUF file holds and how much memory
// the model needs at a given context. Reads only the header (the tensor data stays unmapped
// pages), so it answers at once even for a 7 GB file.
//
// The KV-cache estimate follows llama.cpp's metadata for gemma4 (src/models/gemma4.cpp and
// conversion/gemma.py): per-layer `attention.sliding_window_pattern` (true = sliding),
// `attention.head_count_kv` (scalar or per-layer), `attention.key_length`/`value_length` (global
// layers), `attention.key_length_swa`/`value_length_swa` (sliding layers),
// `attention.sliding_window`, `attention.shared_kv_layers` (trailing layers that reuse an
// earlier layer's cache). Sliding layers hold at most the window, global layers the context;
// f16 K and V.
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "loader/gguf.h"
#include "tools/command.h"

namespace qgemma {
namespace {

struct InfoOptions {
  std::string path;
  int64_t ctx = 32768;
  bool tensors = false;
  bool json = false;
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  va_list ap;
  va_start(ap, f);
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double x = static_cast<double>(b);
  int u = 0;
  while (x >= 1024.0 && u < 4) {
    x /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt("%" PRIu64 " B", b) : fmt("%.2f %s", x, units[u]);
}

std::string human_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt("%.2f B", static_cast<double>(n) / 1e9);
  if (n >= 1000000ull) return fmt("%.2f M", static_cast<double>(n) / 1e6);
  if (n >= 1000ull) return fmt("%.2f K", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A string as a quoted, escaped, possibly shortened literal.
std::string quote(const std::string& s, size_t max_len) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt("\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (s.size() > max_len) out += fmt("... (%zu bytes)", s.size());
  return out;
}

std::string scalar_string(const GgufValue& v, size_t max_str) {
  if (const auto* x = std::get_if<uint64_t>(&v.v)) return std::to_string(*x);
  if (const auto* x = std::get_if<int64_t>(&v.v)) return std::to_string(*x);
  if (const auto* x = std::get_if<double>(&v.v)) {
    return fmt(v.type == GgufValueType::FLOAT32 ? "%.7g" : "%.15g", *x);
  }
  if (const auto* x = std::get_if<bool>(&v.v)) return *x ? "true" : "false";
  if (const auto* x = std::get_if<std::string>(&v.v)) return quote(*x, max_str);
  const auto& a = std::get<GgufValue::Array>(v.v);
  return fmt("[%s x %zu]", std::string(gguf_type_name(a.elem_type)).c_str(), a.items.size());
}

// "[string x 262144] "<pad>", "<eos>", ..." : the type, the count and the first items that fit.
std::string value_summary(const GgufValue& v) {
  const auto* a = std::get_if<GgufValue::Array>(&v.v);
  if (!a) return scalar_string(v, 100);
  std::string s = scalar_string(v, 0);
  constexpr size_t kMaxChars = 100;
  constexpr size_t kMaxItems = 16;
  size_t shown = 0;
  std::string items;
  for (const GgufValue& item : a->items) {
    const std::string one = scalar_string(item, 24);
    if (shown == kMaxItems || (shown > 0 && items.size() + one.size() > kMaxChars)) break;
    items += (shown ? ", " : " ") + one;
    ++shown;
  }
  if (shown < a->items.size()) items += ", ...";
  return s + items;
}

// --- KV cache estimate ------------------------------------------------------------------------

struct KvGroup {
  bool sliding;
  int64_t kv_heads;
  int64_t head_dims;  // K + V per head
  int64_t positions;
  int64_t layers = 0;
  uint64_t bytes = 0;
};

struct KvEstimate {
  bool ok = false;
  uint64_t bytes = 0;
  std::vector<KvGroup> groups;
  int64_t shared_layers = 0;
  std::string note;  // why there is no estimate, or what it assumes
};

constexpr uint64_t kKvElemBytes = 2;  // f16

// Per-layer sliding flags from `<arch>.attention.sliding_window_pattern`: a per-layer array of
// bools (or ints), a single bool for all layers, or llama.cpp's integer period (every n-th layer
// is global; 0 means all sliding).
std::vector<bool> sliding_layers(const GgufFile& f, const std::string& key, int64_t n_layer) {
  const GgufValue* v = f.find(key);
  std::vector<bool> out(static_cast<size_t>(n_layer), false);
  if (!v) return out;
  if (v->type == GgufValueType::ARRAY) {
    const auto& a = std::get<GgufValue::Array>(v->v);
    if (a.items.size() != out.size()) {
      throw Error(f.path() + ": metadata key '" + key + "': expected " + std::to_string(n_layer) +
                  " values (one per layer), found " + std::to_string(a.items.size()));
    }
    if (a.elem_type == GgufValueType::BOOL) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = std::get<bool>(a.items[i].v);
    } else {
      const std::vector<int64_t> xs = f.get_int_array(key);
      for (size_t i = 0; i < out.size(); ++i) out[i] = xs[i] != 0;
    }
  } else if (v->type == GgufValueType::BOOL) {
    std::fill(out.begin(), out.end(), f.get_bool(key));
  } else {
    const int64_t period = f.get_int(key);
    for (int64_t il = 0; il < n_layer; ++il) {
      out[static_cast<size_t>(il)] = period == 0 || (period > 0 && il % period < period - 1);
    }
  }
  return out;
}

KvEstimate estimate_kv(const GgufFile& f, const std::string& arch, int64_t ctx) {
  KvEstimate e;
  const std::string p = arch + ".";
  const auto missing = [&](const std::string& what) {
    e.note = "no KV-cache estimate: the file has no " + what + " (weights only)";
    return e;
  };
  if (arch.empty()) return missing("general.architecture");
  const std::optional<int64_t> n_layer = f.get_int_opt(p + "block_count");
  if (!n_layer) return missing(p + "block_count");
  if (*n_layer <= 0 || *n_layer > 100000) {
    e.note = "no KV-cache estimate: " + p + "block_count is " + std::to_string(*n_layer);
    return e;
  }
  const auto n = static_cast<size_t>(*n_layer);
  std::vector<int64_t> kv_heads;
  if (f.has(p + "attention.head_count_kv")) {
    kv_heads = f.get_int_or_array(p + "attention.head_count_kv", n);
  } else if (f.has(p + "attention.head_count")) {
    kv_heads = f.get_int_or_array(p + "attention.head_count", n);
  } else {
    return missing(p + "attention.head_count_kv");
  }
  std::optional<int64_t> k_len = f.get_int_opt(p + "attention.key_length");
  if (!k_len) {
    const std::optional<int64_t> n_embd = f.get_int_opt(p + "embedding_length");
    const std::optional<int64_t> n_head = f.get_int_opt(p + "attention.head_count");
    if (!n_embd || !n_head || *n_head <= 0) return missing(p + "attention.key_length");
    k_len = *n_embd / *n_head;
  }
  const int64_t v_len = f.get_int_opt(p + "attention.value_length").value_or(*k_len);
  const int64_t k_len_swa = f.get_int_opt(p + "attention.key_length_swa").value_or(*k_len);
  const int64_t v_len_swa = f.get_int_opt(p + "attention.value_length_swa").value_or(v_len);
  const int64_t window = f.get_int_opt(p + "attention.sliding_window").value_or(0);
  const std::string pattern_key = p + "attention.sliding_window_pattern";
  std::vector<bool> sliding = sliding_layers(f, pattern_key, *n_layer);
  if (window <= 0) std::fill(sliding.begin(), sliding.end(), false);
  constexpr int64_t kMaxDim = int64_t{1} << 30;
  for (int64_t x : {*k_len, v_len, k_len_swa, v_len_swa}) {
    if (x < 0 || x > kMaxDim) {
      e.note = "no KV-cache estimate: head size " + std::to_string(x) + " is out of range";
      return e;
    }
  }
  e.shared_layers =
      std::clamp<int64_t>(f.get_int_opt(p + "attention.shared_kv_layers").value_or(0), 0, *n_layer);

  std::map<std::tuple<bool, int64_t, int64_t>, KvGroup> groups;
  for (size_t il = 0; il < n - static_cast<size_t>(e.shared_layers); ++il) {
    const bool swa = sliding[il];
    const int64_t dims = swa ? k_len_swa + v_len_swa : *k_len + v_len;
    const int64_t positions = swa ? std::min(ctx, window) : ctx;
    if (kv_heads[il] < 0) {
      e.note = "no KV-cache estimate: negative KV head count";
      return e;
    }
    uint64_t b = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(kv_heads[il]), static_cast<uint64_t>(dims),
                               &b) ||
        __builtin_mul_overflow(b, static_cast<uint64_t>(positions) * kKvElemBytes, &b) ||
        __builtin_add_overflow(e.bytes, b, &e.bytes)) {
      e.note = "no KV-cache estimate: the sizes in the metadata overflow";
      return e;
    }
    KvGroup& g = groups[{swa, kv_heads[il], dims}];
    g.sliding = swa;
    g.kv_heads = kv_heads[il];
    g.head_dims = dims;
    g.positions = positions;
    g.layers += 1;
    g.bytes += b;
  }
  for (auto& [k, g] : groups) e.groups.push_back(g);
  e.ok = true;
  if (!f.has(pattern_key) && window > 0) {
    e.note = "no " + pattern_key + ": every layer counted at the full context";
  }
  return e;
}

// --- report -----------------------------------------------------------------------------------

struct TypeStat {
  size_t count = 0;
  uint64_t bytes = 0;
  uint64_t params = 0;
};

struct Report {
  std::string arch, name;
  std::map<std::string, TypeStat> types;
  uint64_t weights = 0, params = 0;
  KvEstimate kv;
};

Report make_report(const GgufFile& f, int64_t ctx) {
  Report r;
  if (const GgufValue* a = f.find("general.architecture")) {
    if (const auto* s = std::get_if<std::string>(&a->v)) r.arch = *s;
  }
  if (const GgufValue* a = f.find("general.name")) {
    if (const auto* s = std::get_if<std::string>(&a->v)) r.name = *s;
  }
  for (const GgufTensor& t : f.tensors()) {
    TypeStat& s = r.types[std::string(type_traits(t.type).name)];
    s.count += 1;
    s.bytes += t.nbytes;
    s.params += static_cast<uint64_t>(t.n_elements());
    r.weights += t.nbytes;
    r.params += static_cast<uint64_t>(t.n_elements());
  }
  try {
    r.kv = estimate_kv(f, r.arch, ctx);
  } catch (const Error& e) {
    r.kv.ok = false;
    r.kv.note = std::string("no KV-cache estimate: ") + e.what();
  }
  return r;
}

std::string kv_group_line(const KvGroup& g) {
  return fmt("%" PRId64 " %s layer%s x %" PRId64 " KV head%s x %" PRId64 " (K+V) x %" PRId64
             " positions x 2 B = %s",
             g.layers, g.sliding ? "sliding" : "global", g.layers == 1 ? "" : "s", g.kv_heads,
             g.kv_heads == 1 ? "" : "s", g.head_dims, g.positions, human_bytes(g.bytes).c_str());
}

void print_text(const GgufFile& f, const Report& r, const InfoOptions& o) {
  std::string out;
  out += fmt("file:          %s\n", f.path().c_str());
  out += fmt("format:        GGUF v%u, %s (%" PRIu64 " bytes), alignment %" PRIu64
             ", data at byte %" PRIu64 "\n",
             f.version(), human_bytes(f.file_size()).c_str(), f.file_size(), f.alignment(),
             f.data_offset());
  out += fmt("architecture:  %s\n", r.arch.empty() ? "(none)" : r.arch.c_str());
  if (!r.name.empty()) out += fmt("name:          %s\n", r.name.c_str());
  out += fmt("tensors:       %zu\n", f.tensors().size());
  out += fmt("parameters:    %" PRIu64 " (%s)\n", r.params, human_count(r.params).c_str());

  size_t key_w = 0;
  for (const GgufKV& kv : f.metadata())
    key_w = std::max(key_w, std::min<size_t>(kv.key.size(), 48));
  out += fmt("\nmetadata (%zu keys):\n", f.metadata().size());
  for (const GgufKV& kv : f.metadata()) {
    out += fmt("  %-*s  %-8s %s\n", static_cast<int>(key_w), kv.key.c_str(),
               std::string(gguf_type_name(kv.value.type)).c_str(), value_summary(kv.value).c_str());
  }

  if (o.tensors) {
    size_t name_w = 4;
    for (const GgufTensor& t : f.tensors())
      name_w = std::max(name_w, std::min<size_t>(t.name.size(), 48));
    out += fmt("\n  %-*s  %-24s %-6s %14s\n", static_cast<int>(name_w), "name", "shape", "type",
               "bytes");
    for (const GgufTensor& t : f.tensors()) {
      out += fmt("  %-*s  %-24s %-6s %14" PRIu64 "\n", static_cast<int>(name_w), t.name.c_str(),
                 shape_string(t.shape).c_str(), std::string(type_traits(t.type).name).c_str(),
                 t.nbytes);
    }
  }

  out += "\ntensors by type:\n";
  for (const auto& [name, s] : r.types) {
    out += fmt("  %-6s %6zu tensors %12s parameters %12s\n", name.c_str(), s.count,
               human_count(s.params).c_str(), human_bytes(s.bytes).c_str());
  }
  out += fmt("  total  %6zu tensors %12s parameters %12s\n", f.tensors().size(),
             human_count(r.params).c_str(), human_bytes(r.weights).c_str());

  out += fmt("\nmemory at --ctx %" PRId64 ":\n", o.ctx);
  out += fmt("  weights     %12s (%" PRIu64 " bytes)\n", human_bytes(r.weights).c_str(), r.weights);
  if (r.kv.ok) {
    out += fmt("  KV cache    %12s (%" PRIu64 " bytes, f16)\n", human_bytes(r.kv.bytes).c_str(),
               r.kv.bytes);
    for (const KvGroup& g : r.kv.groups) out += "                " + kv_group_line(g) + "\n";
    if (r.kv.shared_layers > 0) {
      out += fmt("                %" PRId64 " layers share an earlier layer's cache\n",
                 r.kv.shared_layers);
    }
    out += fmt("  total       %12s (%" PRIu64 " bytes; activations and scratch not counted)\n",
               human_bytes(r.weights + r.kv.bytes).c_str(), r.weights + r.kv.bytes);
  }
  if (!r.kv.note.empty()) out += "  note: " + r.kv.note + "\n";
  std::fputs(out.c_str(), stdout);
}

nlohmann::json value_json(const GgufValue& v) {
  nlohmann::json j;
  j["type"] = std::string(gguf_type_name(v.type));
  if (const auto* a = std::get_if<GgufValue::Array>(&v.v)) {
    j["elem_type"] = std::string(gguf_type_name(a->elem_type));
    j["count"] = a->items.size();
    j["summary"] = value_summary(v);
  } else if (const auto* x = std::get_if<uint64_t>(&v.v)) {
    j["value"] = *x;
  } else if (const auto* x = std::get_if<int64_t>(&v.v)) {
    j["value"] = *x;
  } else if (const auto* x = std::get_if<double>(&v.v)) {
    j["value"] = *x;
  } else if (const auto* x = std::get_if<bool>(&v.v)) {
    j["value"] = *x;
  } else {
    j["value"] = std::get<std::string>(v.v);
  }
  return j;
}

void print_json(const GgufFile& f, const Report& r, const InfoOptions& o) {
  nlohmann::json j;
  j["file"] = f.path();
  j["version"] = f.version();
  j["file_size"] = f.file_size();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();
  j["architecture"] = r.arch;
  j["name"] = r.name;
  j["n_tensors"] = f.tensors().size();
  j["n_params"] = r.params;
  j["weights_bytes"] = r.weights;
  nlohmann::json md = nlohmann::json::object();
  for (const GgufKV& kv : f.metadata()) md[kv.key] = value_json(kv.value);
  j["metadata"] = md;
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, s] : r.types) {
    types[name] = {{"count", s.count}, {"bytes", s.bytes}, {"params", s.params}};
  }
  j["types"] = types;
  nlohmann::json tensors = nlohmann::json::array();
  for (const GgufTensor& t : f.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"type", std::string(type_traits(t.type).name)},
                       {"offset", t.offset},
                       {"bytes", t.nbytes}});
  }
  j["tensors"] = tensors;
  nlohmann::json mem;
  mem["ctx"] = o.ctx;
  mem["weights_bytes"] = r.weights;
  if (r.kv.ok) {
    mem["kv_cache_bytes"] = r.kv.bytes;
    mem["total_bytes"] = r.weights + r.kv.bytes;
    nlohmann::json groups = nlohmann::json::array();
    for (const KvGroup& g : r.kv.groups) {
      groups.push_back({{"sliding", g.sliding},
                        {"layers", g.layers},
                        {"kv_heads", g.kv_heads},
                        {"head_dims_k_plus_v", g.head_dims},
                        {"positions", g.positions},
                        {"bytes", g.bytes}});
    }
    mem["kv_groups"] = groups;
    mem["shared_kv_layers"] = r.kv.shared_layers;
  }
  if (!r.kv.note.empty()) mem["note"] = r.kv.note;
  j["memory"] = mem;
  const std::string s = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fputs((s + "\n").c_str(), stdout);
}

int run_info(const InfoOptions& o) {
  auto f = GgufFile::open(o.path);
  const Report r = make_report(*f, o.ctx);
  if (o.json) {
    print_json(*f, r, o);
  } else {
    print_text(*f, r, o);
  }
  return 0;
}

const bool registered = register_command(
    "info", "Print a GGUF file's metadata, tensors and memory estimate",
    [](CLI::App& app, std::function<int()>& run) {
      auto opt = std::make_shared<InfoOptions>();
      app.add_option("file", opt->path, "GGUF file")->required();
      app.add_option("--ctx", opt->ctx, "Context length for the memory estimate")
          ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
      app.add_flag("--tensors", opt->tensors, "List every tensor (name, shape, type, bytes)");
      app.add_flag("--json", opt->json, "Print everything as JSON");
      run = [opt] { return run_info(*opt); };
    });

}  // namespace
}  // namespace qgemma
