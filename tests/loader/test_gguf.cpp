// GGUF reader/writer: round trip of every value and tensor type, typed getters, writer checks.
// The malformed-file corpus is in test_gguf_malformed.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "gguf_test_util.h"
#include "loader/gguf.h"

namespace qgemma {
namespace {

using testing::read_file;
using testing::TempDir;

// Deep equality of two values, including the widened representation and nested arrays.
bool same(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (const auto* x = std::get_if<double>(&a.v)) {
    const double y = std::get<double>(b.v);
    return (std::isnan(*x) && std::isnan(y)) || *x == y;
  }
  if (const auto* x = std::get_if<GgufValue::Array>(&a.v)) {
    const auto& y = std::get<GgufValue::Array>(b.v);
    if (x->elem_type != y.elem_type || x->items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i) {
      if (!same(x->items[i], y.items[i])) return false;
    }
    return true;
  }
  if (const auto* x = std::get_if<uint64_t>(&a.v)) return *x == std::get<uint64_t>(b.v);
  if (const auto* x = std::get_if<int64_t>(&a.v)) return *x == std::get<int64_t>(b.v);
  if (const auto* x = std::get_if<bool>(&a.v)) return *x == std::get<bool>(b.v);
  return std::get<std::string>(a.v) == std::get<std::string>(b.v);
}

GgufValue u(GgufValueType t, uint64_t x) { return {t, x}; }
GgufValue s(GgufValueType t, int64_t x) { return {t, x}; }
GgufValue f64(double x) { return {GgufValueType::FLOAT64, x}; }

// One metadata entry of every scalar type at its extremes, arrays of every element type, empty
// and nested arrays.
std::vector<GgufKV> all_value_kinds() {
  using T = GgufValueType;
  std::vector<GgufKV> kvs = {
      {"u8", u(T::UINT8, 255)},
      {"i8", s(T::INT8, -128)},
      {"u16", u(T::UINT16, 65535)},
      {"i16", s(T::INT16, -32768)},
      {"u32", GgufValue::u32(4000000000u)},
      {"i32", GgufValue::i32(std::numeric_limits<int32_t>::min())},
      {"u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
      {"i64", s(T::INT64, std::numeric_limits<int64_t>::min())},
      {"f32", GgufValue::f32(-1.5e-7f)},
      {"f32.nan", GgufValue::f32(std::numeric_limits<float>::quiet_NaN())},
      {"f64", f64(3.141592653589793)},
      {"bool.true", GgufValue::boolean(true)},
      {"bool.false", GgufValue::boolean(false)},
      {"str", GgufValue::str("héllo \xe2\x96\x81world")},
      {"str.empty", GgufValue::str("")},
      {"str.nul", GgufValue::str(std::string("a\0b", 3))},
      {"arr.u8", GgufValue::array(T::UINT8, {u(T::UINT8, 0), u(T::UINT8, 200)})},
      {"arr.i8", GgufValue::array(T::INT8, {s(T::INT8, -1), s(T::INT8, 127)})},
      {"arr.u16", GgufValue::array(T::UINT16, {u(T::UINT16, 7)})},
      {"arr.i16", GgufValue::array(T::INT16, {s(T::INT16, -7), s(T::INT16, 8)})},
      {"arr.u32", GgufValue::array(T::UINT32, {GgufValue::u32(1), GgufValue::u32(2)})},
      {"arr.i32", GgufValue::i32_array({8, 8, 8, 8, 8, 1})},
      {"arr.u64", GgufValue::array(T::UINT64, {GgufValue::u64(1ull << 40)})},
      {"arr.i64", GgufValue::array(T::INT64, {s(T::INT64, -(1ll << 40))})},
      {"arr.f32", GgufValue::f32_array({0.0f, -2.5f, 1e30f})},
      {"arr.f64", GgufValue::array(T::FLOAT64, {f64(1e-300), f64(-0.0)})},
      {"arr.bool",
       GgufValue::array(T::BOOL, {GgufValue::boolean(true), GgufValue::boolean(false)})},
      {"arr.str", GgufValue::str_array({"<pad>", "", "▁the"})},
      {"arr.empty", GgufValue::array(T::FLOAT32, {})},
      {"arr.nested",
       GgufValue::array(T::ARRAY, {GgufValue::i32_array({1, 2, 3}), GgufValue::str_array({"x"}),
                                   GgufValue::array(T::UINT8, {})})},
      {"arr.nested2",
       GgufValue::array(T::ARRAY, {GgufValue::array(T::ARRAY, {GgufValue::f32_array({4.0f})})})},
  };
  return kvs;
}

// Every type id a GGUF file may hold.
std::vector<TensorType> file_tensor_types() {
  std::vector<TensorType> out;
  for (uint32_t id = 0; id < 1000; ++id) {
    if (is_known_type(id)) out.push_back(static_cast<TensorType>(id));
  }
  return out;
}

struct WrittenTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Random tensors of every type, with 1 to 4 dimensions.
std::vector<WrittenTensor> random_tensors(std::mt19937& rng) {
  std::vector<WrittenTensor> out;
  int i = 0;
  for (TensorType t : file_tensor_types()) {
    const TypeTraits& tr = type_traits(t);
    std::vector<int64_t> shape = {tr.block_size * (1 + i % 3)};
    for (int d = 1; d < 1 + i % 4; ++d) shape.push_back(1 + (i + d) % 3);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(n / tr.block_size) * tr.type_size);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    out.push_back({"t" + std::to_string(i) + "." + std::string(tr.name), t, shape, bytes});
    ++i;
  }
  return out;
}

class GgufRoundTrip : public ::testing::TestWithParam<uint64_t> {};

TEST_P(GgufRoundTrip, EveryValueTypeAndTensorType) {
  const uint64_t alignment = GetParam();
  TempDir dir;
  const std::string path = dir.file("round.gguf");
  std::mt19937 rng(42);
  const auto kvs = all_value_kinds();
  const auto tensors = random_tensors(rng);
  ASSERT_GE(tensors.size(), 20u);

  GgufWriter w(alignment);
  for (const auto& kv : kvs) w.set(kv.key, kv.value);
  for (const auto& t : tensors) {
    w.add_tensor(t.name, t.type, t.shape, std::span<const uint8_t>(t.bytes));
  }
  w.write(path);

  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), alignment);
  EXPECT_EQ(f->file_size(), std::filesystem::file_size(path));
  EXPECT_EQ(f->data_offset() % alignment, 0u);

  // The writer adds general.alignment only when it differs from the default 32.
  const size_t extra = alignment == 32 ? 0 : 1;
  ASSERT_EQ(f->metadata().size(), kvs.size() + extra);
  for (size_t i = 0; i < kvs.size(); ++i) {
    EXPECT_EQ(f->metadata()[i].key, kvs[i].key);
    EXPECT_TRUE(same(f->metadata()[i].value, kvs[i].value)) << kvs[i].key;
    const GgufValue* found = f->find(kvs[i].key);
    ASSERT_NE(found, nullptr) << kvs[i].key;
    EXPECT_TRUE(same(*found, kvs[i].value)) << kvs[i].key;
  }
  if (extra) EXPECT_EQ(f->get_int("general.alignment"), static_cast<int64_t>(alignment));

  ASSERT_EQ(f->tensors().size(), tensors.size());
  const std::string file_bytes = read_file(path);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensor& t = f->tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.type, tensors[i].type) << t.name;
    EXPECT_EQ(t.shape, tensors[i].shape) << t.name;
    EXPECT_EQ(t.nbytes, tensors[i].bytes.size()) << t.name;
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    ASSERT_EQ(f->find_tensor(t.name), &t);
    EXPECT_EQ(std::memcmp(t.data, tensors[i].bytes.data(), t.nbytes), 0) << t.name;
    // The data pointer is where the file says: data section + offset.
    EXPECT_EQ(std::memcmp(file_bytes.data() + f->data_offset() + t.offset, t.data, t.nbytes), 0);
  }
  EXPECT_EQ(f->find_tensor("absent"), nullptr);
  EXPECT_EQ(f->find("absent"), nullptr);

  // The in-memory parser sees the same file.
  auto g = GgufFile::parse(
      "mem", std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(file_bytes.data()),
                                      file_bytes.size()));
  EXPECT_EQ(g->tensors().size(), f->tensors().size());
  EXPECT_EQ(g->metadata().size(), f->metadata().size());
}

INSTANTIATE_TEST_SUITE_P(Alignments, GgufRoundTrip, ::testing::Values(32, 1, 64, 4096));

TEST(GgufWriter, FillCallbackStreamsEachTensor) {
  TempDir dir;
  const std::string path = dir.file("fill.gguf");
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("test"));
  std::vector<size_t> seen;
  w.add_tensor("a", TensorType::F32, {8, 3}, [&](std::span<uint8_t> out) {
    seen.push_back(out.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i);
  });
  w.add_tensor("b", TensorType::Q8_0, {64}, [&](std::span<uint8_t> out) {
    seen.push_back(out.size());
    std::fill(out.begin(), out.end(), uint8_t{0xab});
  });
  w.write(path);
  EXPECT_EQ(seen, (std::vector<size_t>{96, 68}));
  auto f = GgufFile::open(path);
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[0].data[95], 95);
  EXPECT_EQ(f->tensors()[1].nbytes, 68u);
  EXPECT_EQ(f->tensors()[1].data[67], 0xab);
  EXPECT_EQ(f->tensors()[1].n_elements(), 64);
  // Only the final file is left: the temporary was renamed.
  size_t n_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++n_files;
  }
  EXPECT_EQ(n_files, 1u);
}

TEST(GgufWriter, FailingFillLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("fail.gguf");
  GgufWriter w;
  w.add_tensor("a", TensorType::F32, {4},
               [](std::span<uint8_t>) { throw Error("fill failed on purpose"); });
  EXPECT_THROW(w.write(path), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(GgufWriter, RefusesInvalidInput) {
  const auto expect_error = [](const std::function<void()>& f, const std::string& phrase) {
    try {
      f();
      ADD_FAILURE() << "no error, expected: " << phrase;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  expect_error([] { GgufWriter w(0); }, "not a power of two");
  expect_error([] { GgufWriter w(48); }, "not a power of two");
  GgufWriter w;
  w.add_tensor("x", TensorType::F32, {4}, nullptr);
  expect_error([&] { w.add_tensor("x", TensorType::F32, {4}, nullptr); }, "duplicate tensor");
  expect_error([&] { w.add_tensor("q", TensorType::Q4_0, {33}, nullptr); }, "block size 32");
  expect_error([&] { w.add_tensor("z", TensorType::F32, {4, 0}, nullptr); }, "non-positive");
  expect_error([&] { w.add_tensor("d", TensorType::F32, {1, 1, 1, 1, 1}, nullptr); }, "dimensions");
  expect_error([&] { w.add_tensor("r", TensorType::Q4_0x8, {32}, nullptr); }, "unknown type");
  expect_error(
      [&] {
        w.add_tensor("o", TensorType::F32, {1ll << 40, 1ll << 40}, nullptr);
      },
      "overflows");
  const std::vector<uint8_t> three(3);
  expect_error([&] { w.add_tensor("b", TensorType::F32, {1}, std::span<const uint8_t>(three)); },
               "3 bytes given");
  expect_error([&] { w.set("k", {GgufValueType::UINT8, uint64_t{256}}); }, "out of range");
  expect_error([&] { w.set("k", {GgufValueType::INT32, uint64_t{1}}); }, "holds no signed");
  expect_error([&] { w.set("k", {GgufValueType::STRING, 1.0}); }, "holds no string");
  expect_error([&] { w.set("k", GgufValue::array(GgufValueType::INT32, {GgufValue::str("x")})); },
               "differs from the element type");
  expect_error([&] { w.set("general.alignment", GgufValue::u32(64)); }, "must equal");
}

// Arrays nested `levels` deep (1 = a plain array of uint8).
GgufValue nested(int levels) {
  if (levels == 1) return GgufValue::array(GgufValueType::UINT8, {u(GgufValueType::UINT8, 9)});
  return GgufValue::array(GgufValueType::ARRAY, {nested(levels - 1)});
}

TEST(GgufWriter, NestingLimitIsTheReadersLimit) {
  TempDir dir;
  GgufWriter w;
  w.set("deep", nested(8));
  w.write(dir.file("n.gguf"));
  auto f = GgufFile::open(dir.file("n.gguf"));
  EXPECT_TRUE(same(*f->find("deep"), nested(8)));
  EXPECT_THROW(w.set("deeper", nested(9)), Error);
}

TEST(GgufWriter, SetReplacesAKey) {
  TempDir dir;
  GgufWriter w;
  w.set("k", GgufValue::u32(1));
  w.set("k", GgufValue::str("two"));
  w.write(dir.file("r.gguf"));
  auto f = GgufFile::open(dir.file("r.gguf"));
  ASSERT_EQ(f->metadata().size(), 1u);
  EXPECT_EQ(f->get_string("k"), "two");
}

// --- typed getters ---------------------------------------------------------------------------

class GgufGetters : public ::testing::Test {
 protected:
  void SetUp() override {
    GgufWriter w;
    for (const auto& kv : all_value_kinds()) w.set(kv.key, kv.value);
    w.set("layers.kv", GgufValue::i32_array({8, 8, 1}));
    w.set("pattern", GgufValue::array(GgufValueType::BOOL,
                                      {GgufValue::boolean(true), GgufValue::boolean(false)}));
    path_ = dir_.file("g.gguf");
    w.write(path_);
    f_ = GgufFile::open(path_);
  }
  // Expects `f` to throw an Error that names the file, the key and contains `phrase`.
  void expect_error(const std::function<void()>& f, const std::string& key,
                    const std::string& phrase) {
    try {
      f();
      ADD_FAILURE() << "no error for " << key;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(path_ + ": ", 0), 0u) << m;
      EXPECT_NE(m.find("'" + key + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(phrase), std::string::npos) << m;
    }
  }
  TempDir dir_;
  std::string path_;
  std::unique_ptr<GgufFile> f_;
};

TEST_F(GgufGetters, ReturnValuesOfMatchingTypes) {
  EXPECT_EQ(f_->get_int("u8"), 255);
  EXPECT_EQ(f_->get_int("i8"), -128);
  EXPECT_EQ(f_->get_int("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f_->get_u32("u32"), 4000000000u);
  EXPECT_EQ(f_->get_u32("u16"), 65535u);
  EXPECT_FLOAT_EQ(f_->get_f32("f32"), -1.5e-7f);
  EXPECT_FLOAT_EQ(f_->get_f32("f64"), 3.14159265f);
  EXPECT_TRUE(f_->get_bool("bool.true"));
  EXPECT_FALSE(f_->get_bool("bool.false"));
  EXPECT_EQ(f_->get_string("str"), "héllo \xe2\x96\x81world");
  EXPECT_EQ(f_->get_string("str.nul"), std::string("a\0b", 3));
  EXPECT_EQ(f_->get_string_array("arr.str"), (std::vector<std::string>{"<pad>", "", "▁the"}));
  EXPECT_EQ(f_->get_f32_array("arr.f32"), (std::vector<float>{0.0f, -2.5f, 1e30f}));
  EXPECT_EQ(f_->get_int_array("arr.i16"), (std::vector<int64_t>{-7, 8}));
  EXPECT_EQ(f_->get_int_array("arr.u64"), (std::vector<int64_t>{1ll << 40}));
  EXPECT_EQ(f_->get_bool_array("pattern"), (std::vector<bool>{true, false}));
  EXPECT_EQ(f_->get_int_or_array("u8", 3), (std::vector<int64_t>{255, 255, 255}));
  EXPECT_EQ(f_->get_int_or_array("layers.kv", 3), (std::vector<int64_t>{8, 8, 1}));
  EXPECT_EQ(f_->get_int_opt("absent"), std::nullopt);
  EXPECT_EQ(f_->get_int_opt("i16"), -32768);
  EXPECT_EQ(f_->get_f32_opt("absent"), std::nullopt);
  EXPECT_FLOAT_EQ(*f_->get_f32_opt("f32"), -1.5e-7f);
  EXPECT_TRUE(f_->has("arr.nested"));
  EXPECT_FALSE(f_->has("arr"));
}

TEST_F(GgufGetters, NameFileKeyAndProblem) {
  expect_error([&] { f_->get_int("absent"); }, "absent", "is missing");
  expect_error([&] { f_->get_string("u32"); }, "u32", "expected string, found uint32");
  expect_error([&] { f_->get_int("str"); }, "str", "expected an integer, found string");
  expect_error([&] { f_->get_int("u64"); }, "u64", "does not fit");
  expect_error([&] { f_->get_u32("i8"); }, "i8", "does not fit uint32");
  expect_error([&] { f_->get_f32("u8"); }, "u8", "expected float32, found uint8");
  expect_error([&] { f_->get_bool("u8"); }, "u8", "expected bool");
  expect_error([&] { f_->get_string_array("arr.i32"); }, "arr.i32",
               "expected array of string, found array of int32");
  expect_error([&] { f_->get_f32_array("str"); }, "str", "found string");
  expect_error([&] { f_->get_int_array("arr.f32"); }, "arr.f32", "found array of float32");
  expect_error([&] { f_->get_bool_array("arr.u8"); }, "arr.u8", "expected array of bool");
  expect_error([&] { f_->get_int_or_array("layers.kv", 4); }, "layers.kv",
               "expected 4 values (one per layer), found 3");
  expect_error([&] { f_->get_int_or_array("arr.f32", 3); }, "arr.f32", "array of integers");
  expect_error([&] { f_->get_int_opt("str"); }, "str", "expected an integer");
  expect_error([&] { f_->require("nope"); }, "nope", "is missing");
}

TEST(GgufFileOpen, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THROW(GgufFile::open(dir.file("none.gguf")), Error);
  try {
    GgufFile::open(dir.path().string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos);
  }
}

TEST(GgufFileOpen, NoTensorsNoData) {
  TempDir dir;
  GgufWriter w(64);
  w.set("general.architecture", GgufValue::str("none"));
  w.write(dir.file("e.gguf"));
  auto f = GgufFile::open(dir.file("e.gguf"));
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->alignment(), 64u);
}

}  // namespace
}  // namespace qgemma
