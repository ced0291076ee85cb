// GGUF v2/v3 reader (memory-mapped, zero copy) and streaming writer. See gguf.h and docs/gguf.md.
//
// The reader trusts nothing in the file: every read goes through Reader, which checks the bytes
// left before touching them; every count is checked against the bytes that could hold it before
// anything is allocated; every size and offset is computed with overflow checks.
#include "loader/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

namespace qgemma {

static_assert(std::endian::native == std::endian::little,
              "GGUF reader assumes a little-endian host");

namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;
// Type ids from kMinInternalType on are qgemma's repacked layouts: never valid in a file.
constexpr uint32_t kMinInternalType = 1000;
// Smallest possible encodings, used to refuse absurd counts before allocating anything:
// a metadata entry is a key (u64 length) + a type (u32) + at least one byte of value; a tensor
// info is a name (u64 length) + n_dims (u32) + at least one dim (u64) + type (u32) + offset (u64).
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[512];
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return fmt;
  if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, static_cast<size_t>(n));
  std::string s(static_cast<size_t>(n) + 1, '\0');
  va_start(ap, fmt);
  std::vsnprintf(s.data(), s.size(), fmt, ap);
  va_end(ap);
  s.resize(static_cast<size_t>(n));
  return s;
}

bool is_valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

bool is_unsigned(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}
bool is_signed(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}
bool is_integer(GgufValueType t) { return is_unsigned(t) || is_signed(t); }
bool is_float(GgufValueType t) {
  return t == GgufValueType::FLOAT32 || t == GgufValueType::FLOAT64;
}

// Bytes of the smallest encoding of one value of type t (an array: its type and count).
uint64_t min_encoded_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
    case GgufValueType::STRING:
      return 8;
    case GgufValueType::ARRAY:
      return 12;
  }
  return 1;
}

// The integer in v, if v is an integer that fits int64.
std::optional<int64_t> as_int64(const GgufValue& v) {
  if (is_signed(v.type)) {
    if (const auto* x = std::get_if<int64_t>(&v.v)) return *x;
  } else if (is_unsigned(v.type)) {
    if (const auto* x = std::get_if<uint64_t>(&v.v)) {
      if (*x <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return static_cast<int64_t>(*x);
      }
    }
  }
  return std::nullopt;
}

std::string describe_type(const GgufValue& v) {
  if (v.type != GgufValueType::ARRAY) return std::string(gguf_type_name(v.type));
  const auto* a = std::get_if<GgufValue::Array>(&v.v);
  return "array of " + std::string(a ? gguf_type_name(a->elem_type) : "unknown");
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// Rounds x up to a multiple of the power of two a; false on overflow.
bool align_up(uint64_t x, uint64_t a, uint64_t* out) {
  uint64_t t;
  if (add_overflows(x, a - 1, &t)) return false;
  *out = t & ~(a - 1);
  return true;
}

bool is_file_tensor_type(uint32_t id) { return id < kMinInternalType && is_known_type(id); }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Bounds-checked little-endian reads from [p, p + n). Every failure names the file, the item
// being read (`where_`, set by the caller) and the byte position.
class Reader {
 public:
  Reader(const std::string& file, const uint8_t* p, uint64_t n) : file_(file), p_(p), n_(n) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return n_ - pos_; }
  void set_where(std::string w) { where_ = std::move(w); }

  [[noreturn]] void fail(const std::string& msg) const { throw Error(file_ + ": " + msg); }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(format("truncated: %s%s%s at byte %" PRIu64 " needs %" PRIu64
                  " bytes, but the file is %" PRIu64 " bytes",
                  where_.c_str(), where_.empty() ? "" : ": ", what, pos_, n, n_));
    }
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(format("%s%sstring of %" PRIu64 " bytes (%s) at byte %" PRIu64
                  " runs past the end of the file (%" PRIu64 " bytes)",
                  where_.c_str(), where_.empty() ? "" : ": ", len, what, at, n_));
    }
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  GgufValue read_value(GgufValueType t, int depth) {
    GgufValue out;
    out.type = t;
    switch (t) {
      case GgufValueType::UINT8:
        out.v = uint64_t{read<uint8_t>("uint8 value")};
        break;
      case GgufValueType::INT8:
        out.v = int64_t{read<int8_t>("int8 value")};
        break;
      case GgufValueType::UINT16:
        out.v = uint64_t{read<uint16_t>("uint16 value")};
        break;
      case GgufValueType::INT16:
        out.v = int64_t{read<int16_t>("int16 value")};
        break;
      case GgufValueType::UINT32:
        out.v = uint64_t{read<uint32_t>("uint32 value")};
        break;
      case GgufValueType::INT32:
        out.v = int64_t{read<int32_t>("int32 value")};
        break;
      case GgufValueType::UINT64:
        out.v = uint64_t{read<uint64_t>("uint64 value")};
        break;
      case GgufValueType::INT64:
        out.v = int64_t{read<int64_t>("int64 value")};
        break;
      case GgufValueType::FLOAT32:
        out.v = double{read<float>("float32 value")};
        break;
      case GgufValueType::FLOAT64:
        out.v = double{read<double>("float64 value")};
        break;
      case GgufValueType::BOOL:
        out.v = read<uint8_t>("bool value") != 0;
        break;
      case GgufValueType::STRING:
        out.v = read_string("string value");
        break;
      case GgufValueType::ARRAY:
        out.v = read_array(depth);
        break;
    }
    return out;
  }

 private:
  GgufValue::Array read_array(int depth) {
    if (depth >= kMaxArrayDepth) {
      fail(format("%s: arrays nested deeper than %d levels", where_.c_str(), kMaxArrayDepth));
    }
    const uint32_t et = read<uint32_t>("array element type");
    if (!is_valid_value_type(et)) {
      fail(format("%s: unknown array element type %u", where_.c_str(), et));
    }
    const auto elem = static_cast<GgufValueType>(et);
    const uint64_t at = pos_;
    const uint64_t count = read<uint64_t>("array length");
    if (count > remaining() / min_encoded_size(elem)) {
      fail(format("%s: array of %" PRIu64 " %s values at byte %" PRIu64
                  " runs past the end of the file (%" PRIu64 " bytes)",
                  where_.c_str(), count, std::string(gguf_type_name(elem)).c_str(), at, n_));
    }
    GgufValue::Array a{elem, {}};
    a.items.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) a.items.push_back(read_value(elem, depth + 1));
    return a;
  }

  const std::string& file_;
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
  std::string where_;
};

}  // namespace

std::string_view gguf_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
      return "uint8";
    case GgufValueType::INT8:
      return "int8";
    case GgufValueType::UINT16:
      return "uint16";
    case GgufValueType::INT16:
      return "int16";
    case GgufValueType::UINT32:
      return "uint32";
    case GgufValueType::INT32:
      return "int32";
    case GgufValueType::FLOAT32:
      return "float32";
    case GgufValueType::BOOL:
      return "bool";
    case GgufValueType::STRING:
      return "string";
    case GgufValueType::ARRAY:
      return "array";
    case GgufValueType::UINT64:
      return "uint64";
    case GgufValueType::INT64:
      return "int64";
    case GgufValueType::FLOAT64:
      return "float64";
  }
  return "unknown";
}

// --- GgufValue factories --------------------------------------------------------------------

GgufValue GgufValue::u32(uint32_t x) { return {GgufValueType::UINT32, uint64_t{x}}; }
GgufValue GgufValue::i32(int32_t x) { return {GgufValueType::INT32, int64_t{x}}; }
GgufValue GgufValue::u64(uint64_t x) { return {GgufValueType::UINT64, x}; }
GgufValue GgufValue::f32(float x) { return {GgufValueType::FLOAT32, double{x}}; }
GgufValue GgufValue::boolean(bool x) { return {GgufValueType::BOOL, x}; }
GgufValue GgufValue::str(std::string s) { return {GgufValueType::STRING, std::move(s)}; }
GgufValue GgufValue::array(GgufValueType elem_type, std::vector<GgufValue> items) {
  return {GgufValueType::ARRAY, Array{elem_type, std::move(items)}};
}
GgufValue GgufValue::str_array(const std::vector<std::string>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (const auto& x : xs) items.push_back(str(x));
  return array(GgufValueType::STRING, std::move(items));
}
GgufValue GgufValue::f32_array(const std::vector<float>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (float x : xs) items.push_back(f32(x));
  return array(GgufValueType::FLOAT32, std::move(items));
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& xs) {
  std::vector<GgufValue> items;
  items.reserve(xs.size());
  for (int32_t x : xs) items.push_back(i32(x));
  return array(GgufValueType::INT32, std::move(items));
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // the reader checked that this product fits
  return n;
}

// --- GgufFile -------------------------------------------------------------------------------

struct GgufFile::Impl {
  std::string path;
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  void* mapping = nullptr;  // owned mmap, or null for parse()
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;
  std::vector<GgufKV> kvs;
  std::unordered_map<std::string, size_t> kv_index;
  std::vector<GgufTensor> tensors;
  std::unordered_map<std::string, size_t> tensor_index;

  ~Impl() {
    if (mapping) munmap(mapping, static_cast<size_t>(size));
  }

  [[noreturn]] void fail(const std::string& msg) const { throw Error(path + ": " + msg); }

  void parse();
  void parse_header(Reader& r, uint64_t* n_tensors, uint64_t* n_kv);
  void read_alignment();
  void read_tensor_info(Reader& r, uint64_t index);
  void check_tensor_data();
};

void GgufFile::Impl::parse_header(Reader& r, uint64_t* n_tensors, uint64_t* n_kv) {
  r.set_where("header");
  const auto magic = r.read<std::array<char, 4>>("magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
    std::string shown;
    for (char c : magic) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    fail("not a GGUF file (magic '" + shown + "', expected 'GGUF')");
  }
  version = r.read<uint32_t>("version");
  if (version != 2 && version != 3) {
    const uint32_t swapped = __builtin_bswap32(version);
    if (swapped >= 1 && swapped <= 3) fail("big-endian GGUF files are not supported");
    fail(format("GGUF version %u is not supported (qgemma reads versions 2 and 3)", version));
  }
  *n_tensors = r.read<uint64_t>("tensor count");
  *n_kv = r.read<uint64_t>("metadata count");
  const uint64_t left = r.remaining();
  if (*n_kv > left / kMinKvBytes) {
    fail(format("metadata count %" PRIu64 " cannot fit in the %" PRIu64
                " bytes after the header (file is %" PRIu64 " bytes)",
                *n_kv, left, size));
  }
  if (*n_tensors > left / kMinTensorInfoBytes) {
    fail(format("tensor count %" PRIu64 " cannot fit in the %" PRIu64
                " bytes after the header (file is %" PRIu64 " bytes)",
                *n_tensors, left, size));
  }
  if (*n_kv * kMinKvBytes + *n_tensors * kMinTensorInfoBytes > left) {  // each term <= left
    fail(format("metadata count %" PRIu64 " and tensor count %" PRIu64 " cannot fit in the %" PRIu64
                " bytes after the header (file is %" PRIu64 " bytes)",
                *n_kv, *n_tensors, left, size));
  }
}

void GgufFile::Impl::read_alignment() {
  auto it = kv_index.find("general.alignment");
  if (it == kv_index.end()) return;
  const GgufValue& v = kvs[it->second].value;
  const std::optional<int64_t> a = as_int64(v);
  if (!a) {
    fail("metadata key 'general.alignment': expected an integer, found " + describe_type(v));
  }
  if (*a <= 0 || (*a & (*a - 1)) != 0) {
    fail(
        format("metadata key 'general.alignment': %" PRId64 " is not a positive power of two", *a));
  }
  alignment = static_cast<uint64_t>(*a);
}

void GgufFile::Impl::read_tensor_info(Reader& r, uint64_t index) {
  r.set_where(format("tensor info %" PRIu64, index));
  GgufTensor t;
  t.name = r.read_string("name");
  const std::string where = "tensor '" + t.name + "'";
  r.set_where(where);
  if (!tensor_index.emplace(t.name, tensors.size()).second) {
    fail("duplicate tensor name '" + t.name + "'");
  }
  const uint32_t n_dims = r.read<uint32_t>("n_dims");
  if (n_dims == 0 || n_dims > kMaxDims) {
    fail(format("%s: n_dims %u is out of range (1..%d)", where.c_str(), n_dims, kMaxDims));
  }
  for (uint32_t d = 0; d < n_dims; ++d) {
    const auto dim = static_cast<int64_t>(r.read<uint64_t>("dimension"));
    if (dim <= 0) {
      fail(format("%s: dimension %u is %" PRId64 " (must be positive)", where.c_str(), d, dim));
    }
    t.shape.push_back(dim);
  }
  const uint32_t type_id = r.read<uint32_t>("type");
  t.offset = r.read<uint64_t>("offset");
  if (!is_file_tensor_type(type_id)) {
    fail(format("%s: unknown tensor type id %u", where.c_str(), type_id));
  }
  t.type = static_cast<TensorType>(type_id);
  const TypeTraits& tr = type_traits(t.type);

  uint64_t n_elements = 1;
  for (int64_t d : t.shape) {
    if (mul_overflows(n_elements, static_cast<uint64_t>(d), &n_elements) ||
        n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(where + ": element count of shape " + shape_string(t.shape) + " overflows");
    }
  }
  if (t.shape[0] % tr.block_size != 0) {
    fail(format("%s: row length %" PRId64 " is not a multiple of the %s block size %" PRId64,
                where.c_str(), t.shape[0], std::string(tr.name).c_str(), tr.block_size));
  }
  // n_elements fits int64, so (n_elements / block_size) * type_size is the only product to check.
  const uint64_t n_blocks = n_elements / static_cast<uint64_t>(tr.block_size);
  if (mul_overflows(n_blocks, tr.type_size, &t.nbytes)) {
    fail(where + ": size in bytes of shape " + shape_string(t.shape) + " overflows");
  }
  if (t.offset % alignment != 0) {
    fail(format("%s: offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, where.c_str(),
                t.offset, alignment));
  }
  tensors.push_back(std::move(t));
}

void GgufFile::Impl::check_tensor_data() {
  for (GgufTensor& t : tensors) {
    uint64_t end = 0, abs_end = 0;
    if (add_overflows(t.offset, t.nbytes, &end) || add_overflows(data_offset, end, &abs_end) ||
        abs_end > size) {
      fail(format("tensor '%s': data [offset %" PRIu64 ", %" PRIu64
                  " bytes] runs past the end of the file (data section at byte %" PRIu64
                  ", file is %" PRIu64 " bytes)",
                  t.name.c_str(), t.offset, t.nbytes, data_offset, size));
    }
    t.data = base + data_offset + t.offset;
  }
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& a = tensors[order[i - 1]];
    const GgufTensor& b = tensors[order[i]];
    if (a.offset + a.nbytes > b.offset) {  // no overflow: checked against the file size above
      fail(format("tensors '%s' [offset %" PRIu64 ", %" PRIu64 " bytes] and '%s' [offset %" PRIu64
                  ", %" PRIu64 " bytes] overlap",
                  a.name.c_str(), a.offset, a.nbytes, b.name.c_str(), b.offset, b.nbytes));
    }
  }
}

void GgufFile::Impl::parse() {
  Reader r(path, base, size);
  uint64_t n_tensors = 0, n_kv = 0;
  parse_header(r, &n_tensors, &n_kv);

  kvs.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    r.set_where(format("metadata entry %" PRIu64, i));
    std::string key = r.read_string("key");
    r.set_where("metadata key '" + key + "'");
    if (!kv_index.emplace(key, kvs.size()).second) fail("duplicate metadata key '" + key + "'");
    const uint32_t type = r.read<uint32_t>("value type");
    if (!is_valid_value_type(type)) {
      fail(format("metadata key '%s': unknown value type %u", key.c_str(), type));
    }
    GgufValue value = r.read_value(static_cast<GgufValueType>(type), 0);
    kvs.push_back({std::move(key), std::move(value)});
  }
  read_alignment();

  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    fail(format("tensor count %" PRIu64 " cannot fit in the %" PRIu64
                " bytes after the metadata (file is %" PRIu64 " bytes)",
                n_tensors, r.remaining(), size));
  }
  tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) read_tensor_info(r, i);

  if (!align_up(r.pos(), alignment, &data_offset)) {
    fail(format("data section offset overflows (header ends at byte %" PRIu64 ", alignment %" PRIu64
                ")",
                r.pos(), alignment));
  }
  check_tensor_data();
}

GgufFile::GgufFile() : impl_(std::make_unique<Impl>()) {}
GgufFile::~GgufFile() = default;

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  Impl& m = *f->impl_;
  m.path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) m.fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    m.fail(std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    m.fail("not a regular file");
  }
  m.size = static_cast<uint64_t>(st.st_size);
  if (m.size > 0) {
    void* p = mmap(nullptr, static_cast<size_t>(m.size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      m.fail(std::string("cannot map: ") + std::strerror(e));
    }
    m.mapping = p;
    m.base = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  m.parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse(std::string name, std::span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  Impl& m = *f->impl_;
  m.path = std::move(name);
  m.base = bytes.data();
  m.size = bytes.size();
  m.parse();
  return f;
}

const std::string& GgufFile::path() const { return impl_->path; }
uint32_t GgufFile::version() const { return impl_->version; }
uint64_t GgufFile::alignment() const { return impl_->alignment; }
uint64_t GgufFile::file_size() const { return impl_->size; }
uint64_t GgufFile::data_offset() const { return impl_->data_offset; }
const std::vector<GgufKV>& GgufFile::metadata() const { return impl_->kvs; }
const std::vector<GgufTensor>& GgufFile::tensors() const { return impl_->tensors; }

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = impl_->kv_index.find(std::string(key));
  return it == impl_->kv_index.end() ? nullptr : &impl_->kvs[it->second].value;
}

bool GgufFile::has(std::string_view key) const { return find(key) != nullptr; }

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = impl_->tensor_index.find(std::string(name));
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

// --- typed getters ----------------------------------------------------------------------------

namespace {

[[noreturn]] void key_error(const std::string& file, std::string_view key, const std::string& msg) {
  throw Error(file + ": metadata key '" + std::string(key) + "': " + msg);
}

[[noreturn]] void type_error(const std::string& file, std::string_view key, const char* expected,
                             const GgufValue& v) {
  key_error(file, key, std::string("expected ") + expected + ", found " + describe_type(v));
}

int64_t int_of(const std::string& file, std::string_view key, const GgufValue& v) {
  if (!is_integer(v.type)) type_error(file, key, "an integer", v);
  const std::optional<int64_t> x = as_int64(v);
  if (!x) key_error(file, key, "value does not fit a 64-bit signed integer");
  return *x;
}

const GgufValue::Array& array_of(const std::string& file, std::string_view key, const GgufValue& v,
                                 bool (*elem_ok)(GgufValueType), const char* expected) {
  const auto* a = std::get_if<GgufValue::Array>(&v.v);
  if (v.type != GgufValueType::ARRAY || !a || !elem_ok(a->elem_type)) {
    type_error(file, key, expected, v);
  }
  return *a;
}

bool is_string_type(GgufValueType t) { return t == GgufValueType::STRING; }
bool is_bool_type(GgufValueType t) { return t == GgufValueType::BOOL; }

}  // namespace

const GgufValue& GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) key_error(impl_->path, key, "is missing");
  return *v;
}

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto* s = std::get_if<std::string>(&v.v);
  if (v.type != GgufValueType::STRING || !s) type_error(impl_->path, key, "string", v);
  return *s;
}

int64_t GgufFile::get_int(std::string_view key) const {
  return int_of(impl_->path, key, require(key));
}

uint32_t GgufFile::get_u32(std::string_view key) const {
  const int64_t x = get_int(key);
  if (x < 0 || x > std::numeric_limits<uint32_t>::max()) {
    key_error(impl_->path, key, format("value %" PRId64 " does not fit uint32", x));
  }
  return static_cast<uint32_t>(x);
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto* d = std::get_if<double>(&v.v);
  if (!is_float(v.type) || !d) type_error(impl_->path, key, "float32", v);
  return static_cast<float>(*d);
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto* b = std::get_if<bool>(&v.v);
  if (v.type != GgufValueType::BOOL || !b) type_error(impl_->path, key, "bool", v);
  return *b;
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const auto& a = array_of(impl_->path, key, require(key), is_string_type, "array of string");
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const GgufValue& x : a.items) out.push_back(std::get<std::string>(x.v));
  return out;
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const auto& a = array_of(impl_->path, key, require(key), is_float, "array of float32");
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const GgufValue& x : a.items) out.push_back(static_cast<float>(std::get<double>(x.v)));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const auto& a = array_of(impl_->path, key, require(key), is_integer, "array of integers");
  std::vector<int64_t> out;
  out.reserve(a.items.size());
  for (const GgufValue& x : a.items) out.push_back(int_of(impl_->path, key, x));
  return out;
}

std::vector<bool> GgufFile::get_bool_array(std::string_view key) const {
  const auto& a = array_of(impl_->path, key, require(key), is_bool_type, "array of bool");
  std::vector<bool> out;
  out.reserve(a.items.size());
  for (const GgufValue& x : a.items) out.push_back(std::get<bool>(x.v));
  return out;
}

std::vector<int64_t> GgufFile::get_int_or_array(std::string_view key, size_t n) const {
  const GgufValue& v = require(key);
  if (v.type != GgufValueType::ARRAY) return std::vector<int64_t>(n, int_of(impl_->path, key, v));
  std::vector<int64_t> out = get_int_array(key);
  if (out.size() != n) {
    key_error(impl_->path, key,
              format("expected %zu values (one per layer), found %zu", n, out.size()));
  }
  return out;
}

std::optional<int64_t> GgufFile::get_int_opt(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}

std::optional<float> GgufFile::get_f32_opt(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_f32(key);
}

// --- GgufWriter -------------------------------------------------------------------------------

namespace {

[[noreturn]] void writer_error(const std::string& msg) { throw Error("GgufWriter: " + msg); }

bool fits(GgufValueType t, uint64_t x) {
  switch (t) {
    case GgufValueType::UINT8:
      return x <= UINT8_MAX;
    case GgufValueType::UINT16:
      return x <= UINT16_MAX;
    case GgufValueType::UINT32:
      return x <= UINT32_MAX;
    default:
      return true;
  }
}

bool fits(GgufValueType t, int64_t x) {
  switch (t) {
    case GgufValueType::INT8:
      return x >= INT8_MIN && x <= INT8_MAX;
    case GgufValueType::INT16:
      return x >= INT16_MIN && x <= INT16_MAX;
    case GgufValueType::INT32:
      return x >= INT32_MIN && x <= INT32_MAX;
    default:
      return true;
  }
}

// Checks that v's variant holds what its type says, that integers fit, and that array items
// all have the array's element type. `what` names the value in the error.
void check_value(const std::string& what, const GgufValue& v, int depth) {
  const auto bad = [&](const char* why) {
    writer_error(what + " (" + std::string(gguf_type_name(v.type)) + "): " + why);
  };
  if (!is_valid_value_type(static_cast<uint32_t>(v.type))) bad("unknown value type");
  if (is_unsigned(v.type)) {
    const auto* x = std::get_if<uint64_t>(&v.v);
    if (!x) bad("holds no unsigned integer");
    if (!fits(v.type, *x)) bad("value out of range");
  } else if (is_signed(v.type)) {
    const auto* x = std::get_if<int64_t>(&v.v);
    if (!x) bad("holds no signed integer");
    if (!fits(v.type, *x)) bad("value out of range");
  } else if (is_float(v.type)) {
    if (!std::holds_alternative<double>(v.v)) bad("holds no floating-point number");
  } else if (v.type == GgufValueType::BOOL) {
    if (!std::holds_alternative<bool>(v.v)) bad("holds no bool");
  } else if (v.type == GgufValueType::STRING) {
    if (!std::holds_alternative<std::string>(v.v)) bad("holds no string");
  } else {
    const auto* a = std::get_if<GgufValue::Array>(&v.v);
    if (!a) bad("holds no array");
    if (depth >= kMaxArrayDepth) bad("arrays nested too deep");
    if (!is_valid_value_type(static_cast<uint32_t>(a->elem_type))) bad("unknown element type");
    for (const GgufValue& item : a->items) {
      if (item.type != a->elem_type) bad("an item's type differs from the element type");
      check_value(what, item, depth + 1);
    }
  }
}

// Size in bytes of a tensor, validating the shape like the reader does.
uint64_t tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& shape) {
  const auto id = static_cast<uint32_t>(type);
  if (!is_file_tensor_type(id))
    writer_error(format("tensor '%s': unknown type id %u", name.c_str(), id));
  if (shape.empty() || shape.size() > static_cast<size_t>(kMaxDims)) {
    writer_error(format("tensor '%s': %zu dimensions (must be 1..%d)", name.c_str(), shape.size(),
                        kMaxDims));
  }
  const TypeTraits& tr = type_traits(type);
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      writer_error("tensor '" + name + "': shape " + shape_string(shape) +
                   " has a non-positive dimension");
    if (mul_overflows(n, static_cast<uint64_t>(d), &n) ||
        n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      writer_error("tensor '" + name + "': element count of " + shape_string(shape) + " overflows");
    }
  }
  if (shape[0] % tr.block_size != 0) {
    writer_error(format("tensor '%s': row length %" PRId64
                        " is not a multiple of the %s block size %" PRId64,
                        name.c_str(), shape[0], std::string(tr.name).c_str(), tr.block_size));
  }
  uint64_t bytes = 0;
  if (mul_overflows(n / static_cast<uint64_t>(tr.block_size), tr.type_size, &bytes)) {
    writer_error("tensor '" + name + "': size in bytes overflows");
  }
  return bytes;
}

// Little-endian byte buffer for the header part of the file.
class Out {
 public:
  template <class T>
  void put(T x) {
    const size_t at = b_.size();
    b_.resize(at + sizeof(T));
    std::memcpy(b_.data() + at, &x, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufValueType::UINT8:
        put(static_cast<uint8_t>(std::get<uint64_t>(v.v)));
        break;
      case GgufValueType::INT8:
        put(static_cast<int8_t>(std::get<int64_t>(v.v)));
        break;
      case GgufValueType::UINT16:
        put(static_cast<uint16_t>(std::get<uint64_t>(v.v)));
        break;
      case GgufValueType::INT16:
        put(static_cast<int16_t>(std::get<int64_t>(v.v)));
        break;
      case GgufValueType::UINT32:
        put(static_cast<uint32_t>(std::get<uint64_t>(v.v)));
        break;
      case GgufValueType::INT32:
        put(static_cast<int32_t>(std::get<int64_t>(v.v)));
        break;
      case GgufValueType::UINT64:
        put(std::get<uint64_t>(v.v));
        break;
      case GgufValueType::INT64:
        put(std::get<int64_t>(v.v));
        break;
      case GgufValueType::FLOAT32:
        put(static_cast<float>(std::get<double>(v.v)));
        break;
      case GgufValueType::FLOAT64:
        put(std::get<double>(v.v));
        break;
      case GgufValueType::BOOL:
        put<uint8_t>(std::get<bool>(v.v) ? 1 : 0);
        break;
      case GgufValueType::STRING:
        put_string(std::get<std::string>(v.v));
        break;
      case GgufValueType::ARRAY: {
        const auto& a = std::get<GgufValue::Array>(v.v);
        put(static_cast<uint32_t>(a.elem_type));
        put<uint64_t>(a.items.size());
        for (const GgufValue& item : a.items) put_value(item);
        break;
      }
    }
  }
  void pad_to(uint64_t alignment) {
    b_.resize(static_cast<size_t>((b_.size() + alignment - 1) / alignment * alignment), 0);
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

// Owns the temporary file until it is renamed into place; removes it on failure.
class TempFile {
 public:
  TempFile(std::string final_path)
      : final_(std::move(final_path)), tmp_(final_ + ".tmp." + std::to_string(getpid())) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("cannot create");
  }
  ~TempFile() {
    if (f_) std::fclose(f_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("cannot write");
  }
  void commit() {
    if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0) fail("cannot write");
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) fail("cannot write");
    if (std::rename(tmp_.c_str(), final_.c_str()) != 0) fail("cannot rename to " + final_);
    committed_ = true;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw Error(tmp_ + ": " + what + ": " + std::strerror(errno));
  }
  std::string final_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace

GgufWriter::GgufWriter(uint64_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > UINT32_MAX) {
    writer_error(format("alignment %" PRIu64 " is not a power of two below 2^32", alignment));
  }
}

void GgufWriter::set(std::string key, GgufValue value) {
  check_value("metadata key '" + key + "'", value, 0);
  if (key == "general.alignment") {
    const std::optional<int64_t> a = as_int64(value);
    if (!a || static_cast<uint64_t>(*a) != alignment_) {
      writer_error(
          format("metadata key 'general.alignment' must equal the writer's alignment %" PRIu64,
                 alignment_));
    }
  }
  for (GgufKV& kv : kvs_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::add_tensor(std::string name, TensorType type, std::vector<int64_t> shape,
                            std::function<void(std::span<uint8_t>)> fill) {
  tensor_bytes(name, type, shape);  // validates
  for (const Pending& p : tensors_) {
    if (p.name == name) writer_error("duplicate tensor name '" + name + "'");
  }
  tensors_.push_back({std::move(name), type, std::move(shape), std::move(fill)});
}

void GgufWriter::add_tensor(std::string name, TensorType type, std::vector<int64_t> shape,
                            std::span<const uint8_t> bytes) {
  const uint64_t n = tensor_bytes(name, type, shape);
  if (bytes.size() != n) {
    writer_error(format("tensor '%s': %zu bytes given, shape %s of %s needs %" PRIu64, name.c_str(),
                        bytes.size(), shape_string(shape).c_str(),
                        std::string(type_traits(type).name).c_str(), n));
  }
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  add_tensor(std::move(name), type, std::move(shape),
             [copy](std::span<uint8_t> out) { std::memcpy(out.data(), copy->data(), out.size()); });
}

void GgufWriter::write(const std::string& path) const {
  std::vector<GgufKV> kvs = kvs_;
  const bool has_alignment_key = std::any_of(
      kvs.begin(), kvs.end(), [](const GgufKV& kv) { return kv.key == "general.alignment"; });
  if (alignment_ != kDefaultAlignment && !has_alignment_key) {
    kvs.push_back({"general.alignment", GgufValue::u32(static_cast<uint32_t>(alignment_))});
  }

  std::vector<uint64_t> sizes, offsets;
  uint64_t data_size = 0;
  for (const Pending& p : tensors_) {
    uint64_t off = 0;
    if (!align_up(data_size, alignment_, &off)) writer_error("data section overflows");
    const uint64_t n = tensor_bytes(p.name, p.type, p.shape);
    if (add_overflows(off, n, &data_size)) writer_error("data section overflows");
    sizes.push_back(n);
    offsets.push_back(off);
  }

  Out h;
  h.put<uint32_t>(0x46554747);  // "GGUF"
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors_.size());
  h.put<uint64_t>(kvs.size());
  for (const GgufKV& kv : kvs) {
    h.put_string(kv.key);
    h.put(static_cast<uint32_t>(kv.value.type));
    h.put_value(kv.value);
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Pending& p = tensors_[i];
    h.put_string(p.name);
    h.put(static_cast<uint32_t>(p.shape.size()));
    for (int64_t d : p.shape) h.put(static_cast<uint64_t>(d));
    h.put(static_cast<uint32_t>(p.type));
    h.put(offsets[i]);
  }
  h.pad_to(alignment_);

  TempFile out(path);
  out.write(h.bytes().data(), h.bytes().size());
  std::vector<uint8_t> buf;
  const std::vector<uint8_t> zeros(static_cast<size_t>(alignment_), 0);
  uint64_t written = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.write(zeros.data(), static_cast<size_t>(offsets[i] - written));
    buf.assign(static_cast<size_t>(sizes[i]), 0);
    if (tensors_[i].fill) tensors_[i].fill(std::span<uint8_t>(buf));
    out.write(buf.data(), buf.size());
    written = offsets[i] + sizes[i];
  }
  out.commit();
}

}  // namespace qgemma
