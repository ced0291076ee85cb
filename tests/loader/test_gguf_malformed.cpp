// A corpus of malformed GGUF files, generated here; each must be refused with an Error that
// names the file and the problem. Run under ASan/UBSan in CI: no crash and no over-read.
#include <gtest/gtest.h>

#include <limits>

#include "gguf_test_util.h"
#include "loader/gguf.h"

namespace qgemma {
namespace {

using namespace qgemma::testing;

constexpr uint32_t kF32 = 0, kQ4_0 = 2, kQ8_0 = 8, kF64 = 28;

// A small valid file: two metadata entries, two tensors (f32 [8, 2] and q8_0 [32]).
RawFile valid_file() {
  RawFile f;
  f.kvs = {kv_str("general.architecture", "test"), kv_u32("test.block_count", 1)};
  f.tensors = {{"a", {8, 2}, kF32, 0}, {"b", {32}, kQ8_0, 64}};
  f.data_bytes = 64 + 34;
  return f;
}

// Parses `bytes` both from a file on disk and from memory; both must throw an Error whose message
// starts with the file's name and contains `phrase`.
void expect_refused(const std::string& bytes, const std::string& phrase) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  write_file(path, bytes);
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "accepted a file that should fail with: " << phrase;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << m;
    EXPECT_NE(m.find(phrase), std::string::npos) << "message: " << m << "\nexpected: " << phrase;
  }
  // A heap copy of exactly the file's size, so ASan sees any read past its end.
  std::vector<uint8_t> heap(bytes.begin(), bytes.end());
  try {
    GgufFile::parse("mem.gguf", std::span<const uint8_t>(heap.data(), heap.size()));
    ADD_FAILURE() << "parse() accepted a file that should fail with: " << phrase;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
  }
}

TEST(GgufMalformed, ValidBaseFileIsAccepted) {
  const std::string bytes = valid_file().bytes();
  std::vector<uint8_t> heap(bytes.begin(), bytes.end());
  auto f = GgufFile::parse("ok.gguf", std::span<const uint8_t>(heap.data(), heap.size()));
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[1].nbytes, 34u);
  EXPECT_EQ(f->data_offset() + 64 + 34, heap.size());
}

TEST(GgufMalformed, BadMagic) {
  RawFile f = valid_file();
  f.magic = "GGML";
  expect_refused(f.bytes(), "not a GGUF file (magic 'GGML'");
}

TEST(GgufMalformed, Version1) {
  RawFile f = valid_file();
  f.version = 1;
  expect_refused(f.bytes(), "GGUF version 1 is not supported");
}

TEST(GgufMalformed, FutureVersion) {
  RawFile f = valid_file();
  f.version = 4;
  expect_refused(f.bytes(), "GGUF version 4 is not supported");
}

TEST(GgufMalformed, BigEndian) {
  RawFile f = valid_file();
  f.version = 0x03000000;
  expect_refused(f.bytes(), "big-endian");
}

TEST(GgufMalformed, EmptyFile) { expect_refused("", "truncated: header: magic"); }

// Every prefix of a valid file is refused: inside the header as truncated, inside the data
// section as a tensor running past the end.
TEST(GgufMalformed, TruncatedAtEveryByte) {
  const RawFile base = valid_file();
  const std::string bytes = base.bytes();
  std::vector<uint8_t> full(bytes.begin(), bytes.end());
  const uint64_t data_start = GgufFile::parse("ok", std::span<const uint8_t>(full))->data_offset();
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::vector<uint8_t> heap(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
    try {
      GgufFile::parse("cut.gguf", std::span<const uint8_t>(heap.data(), heap.size()));
      ADD_FAILURE() << "accepted a file cut at byte " << len;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("cut.gguf: ", 0), 0u) << m;
      const bool ok = m.find("truncated") != std::string::npos ||
                      m.find("runs past the end") != std::string::npos ||
                      m.find("cannot fit") != std::string::npos;
      EXPECT_TRUE(ok) << "cut at " << len << ": " << m;
      if (len >= data_start) EXPECT_NE(m.find("runs past the end of the file"), std::string::npos);
    }
  }
  // The same through the file path for a few cut points.
  expect_refused(bytes.substr(0, 10), "truncated: header: tensor count");
  expect_refused(bytes.substr(0, bytes.size() - 1), "tensor 'b': data [offset 64, 34 bytes]");
}

TEST(GgufMalformed, AbsurdMetadataCount) {
  RawFile f = valid_file();
  f.n_kv = 1ull << 60;
  expect_refused(f.bytes(), "metadata count 1152921504606846976 cannot fit");
}

TEST(GgufMalformed, AbsurdTensorCount) {
  RawFile f = valid_file();
  f.n_tensors = std::numeric_limits<uint64_t>::max();
  expect_refused(f.bytes(), "tensor count 18446744073709551615 cannot fit");
  // Small enough to pass the first check, too large once the metadata has been read.
  RawFile g = valid_file();
  g.kvs.push_back(kv_str("pad", std::string(400, 'x')));
  g.n_tensors = 14;
  expect_refused(g.bytes(), "cannot fit in the");
}

TEST(GgufMalformed, HugeStringLength) {
  RawFile f = valid_file();
  f.kvs[0] = enc_u64(std::numeric_limits<uint64_t>::max()) + "general.architecture";
  expect_refused(f.bytes(),
                 "string of 18446744073709551615 bytes (key) at byte 24 runs past the end");
  RawFile g = valid_file();
  g.kvs[0] = enc_str("general.architecture") + enc_u32(8) + enc_u64(1ull << 62) + "test";
  expect_refused(g.bytes(), "metadata key 'general.architecture': string of 4611686018427387904");
  RawFile h = valid_file();
  h.tensors[0].name = "a";
  std::string b = h.bytes();
  // Corrupt the length of the first tensor name: it follows the two metadata entries.
  const size_t at = b.find(std::string("\x01\0\0\0\0\0\0\0a", 9));
  ASSERT_NE(at, std::string::npos);
  b[at + 7] = '\x7f';
  expect_refused(b, "tensor info 0: string of");
}

TEST(GgufMalformed, HugeArrayCount) {
  RawFile f = valid_file();
  f.kvs.push_back(kv_raw("tokens", 9, enc_u32(8) + enc_u64(1ull << 40)));
  expect_refused(f.bytes(), "metadata key 'tokens': array of 1099511627776 string values");
}

TEST(GgufMalformed, UnknownValueTypes) {
  RawFile f = valid_file();
  f.kvs.push_back(kv_raw("k", 13, enc_u32(0)));
  expect_refused(f.bytes(), "metadata key 'k': unknown value type 13");
  RawFile g = valid_file();
  g.kvs.push_back(kv_raw("k", 9, enc_u32(99) + enc_u64(1)));
  expect_refused(g.bytes(), "metadata key 'k': unknown array element type 99");
}

TEST(GgufMalformed, ArraysNestedTooDeep) {
  std::string v;
  for (int i = 0; i < 100; ++i) v += enc_u32(9) + enc_u64(1);  // array of 1 array of ...
  v += enc_u32(0) + enc_u64(0);
  RawFile f = valid_file();
  f.kvs.push_back(kv_raw("deep", 9, v));
  expect_refused(f.bytes(), "metadata key 'deep': arrays nested deeper than");
}

TEST(GgufMalformed, DuplicateKey) {
  RawFile f = valid_file();
  f.kvs.push_back(kv_u32("test.block_count", 2));
  expect_refused(f.bytes(), "duplicate metadata key 'test.block_count'");
}

TEST(GgufMalformed, DuplicateTensorName) {
  RawFile f = valid_file();
  f.tensors[1].name = "a";
  expect_refused(f.bytes(), "duplicate tensor name 'a'");
}

TEST(GgufMalformed, TooManyDims) {
  RawFile f = valid_file();
  f.tensors[0].dims = {8, 1, 1, 1, 2};
  expect_refused(f.bytes(), "tensor 'a': n_dims 5 is out of range (1..4)");
  RawFile g = valid_file();
  g.tensors[0].dims = {};
  expect_refused(g.bytes(), "tensor 'a': n_dims 0 is out of range");
  RawFile h = valid_file();
  h.tensors[0].n_dims = 0xffffffffu;  // a huge n_dims must not drive a read loop or allocation
  expect_refused(h.bytes(), "n_dims 4294967295 is out of range");
}

TEST(GgufMalformed, ZeroAndNegativeDims) {
  RawFile f = valid_file();
  f.tensors[0].dims = {8, 0};
  expect_refused(f.bytes(), "tensor 'a': dimension 1 is 0 (must be positive)");
  RawFile g = valid_file();
  g.tensors[0].dims = {std::numeric_limits<uint64_t>::max(), 2};
  expect_refused(g.bytes(), "tensor 'a': dimension 0 is -1 (must be positive)");
}

TEST(GgufMalformed, UnknownTensorType) {
  RawFile f = valid_file();
  f.tensors[0].type = 99;
  expect_refused(f.bytes(), "tensor 'a': unknown tensor type id 99");
  RawFile g = valid_file();
  g.tensors[0].type = 4;  // removed from ggml (was q4_2)
  expect_refused(g.bytes(), "unknown tensor type id 4");
  RawFile h = valid_file();
  h.tensors[0].type = static_cast<uint32_t>(TensorType::Q4_0x8);  // qgemma-internal layout
  expect_refused(h.bytes(), "unknown tensor type id 1000");
}

TEST(GgufMalformed, RowNotMultipleOfBlockSize) {
  RawFile f = valid_file();
  f.tensors[1].dims = {33};
  f.tensors[1].type = kQ4_0;
  expect_refused(f.bytes(),
                 "tensor 'b': row length 33 is not a multiple of the q4_0 block size 32");
}

TEST(GgufMalformed, ElementCountOverflow) {
  RawFile f = valid_file();
  f.tensors[0].dims = {1ull << 32, 1ull << 32};
  expect_refused(f.bytes(),
                 "tensor 'a': element count of shape [4294967296, 4294967296] overflows");
  RawFile g = valid_file();
  g.tensors[0].dims = {1ull << 62};  // fits int64 as a count, but not as f64 bytes
  g.tensors[0].type = kF64;
  expect_refused(g.bytes(), "tensor 'a': size in bytes of shape [4611686018427387904] overflows");
}

TEST(GgufMalformed, MisalignedOffset) {
  RawFile f = valid_file();
  f.tensors[1].offset = 65;
  expect_refused(f.bytes(), "tensor 'b': offset 65 is not a multiple of the alignment 32");
}

TEST(GgufMalformed, OverlappingTensors) {
  RawFile f = valid_file();
  f.tensors[1].offset = 32;  // 'a' covers [0, 64)
  expect_refused(f.bytes(),
                 "tensors 'a' [offset 0, 64 bytes] and 'b' [offset 32, 34 bytes] overlap");
  RawFile g = valid_file();
  g.tensors[0].offset = 64;
  g.tensors[1].offset = 0;  // order in the file does not matter
  g.tensors[1].dims = {64};
  g.data_bytes = 128;
  expect_refused(g.bytes(), "overlap");
}

TEST(GgufMalformed, DataPastEnd) {
  RawFile f = valid_file();
  f.data_bytes = 64 + 33;
  expect_refused(f.bytes(), "tensor 'b': data [offset 64, 34 bytes] runs past the end of the file");
  RawFile g = valid_file();
  g.tensors[1].offset = std::numeric_limits<uint64_t>::max() - 31;  // offset + size overflows
  expect_refused(g.bytes(), "tensor 'b': data [offset 18446744073709551584");
  RawFile h = valid_file();
  h.tensors[1].dims = {1ull << 40};
  expect_refused(h.bytes(), "runs past the end of the file");
}

TEST(GgufMalformed, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    RawFile f = valid_file();
    f.kvs.push_back(kv_u32("general.alignment", a));
    expect_refused(f.bytes(), "metadata key 'general.alignment': " + std::to_string(a) +
                                  " is not a positive power of two");
  }
  RawFile f = valid_file();
  f.kvs.push_back(kv_raw("general.alignment", 5, enc_u32(static_cast<uint32_t>(-32))));
  expect_refused(f.bytes(), "-32 is not a positive power of two");
  RawFile g = valid_file();
  g.kvs.push_back(kv_str("general.alignment", "32"));
  expect_refused(g.bytes(), "'general.alignment': expected an integer, found string");
}

TEST(GgufMalformed, AlignmentIsHonoured) {
  RawFile f = valid_file();
  f.kvs.push_back(kv_u32("general.alignment", 64));
  f.alignment = 64;
  std::string ok = f.bytes();
  std::vector<uint8_t> heap(ok.begin(), ok.end());
  auto g = GgufFile::parse("ok", std::span<const uint8_t>(heap));
  EXPECT_EQ(g->alignment(), 64u);
  EXPECT_EQ(g->data_offset() % 64, 0u);
  EXPECT_EQ(g->tensors()[1].data, heap.data() + g->data_offset() + 64);
  // Offset 32 is aligned to the default but not to this file's 64.
  f.tensors[1].offset = 96;
  f.data_bytes = 96 + 34;
  expect_refused(f.bytes(), "offset 96 is not a multiple of the alignment 64");
}

}  // namespace
}  // namespace qgemma
