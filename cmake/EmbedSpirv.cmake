# cmake -DSPV=<file.spv> -DOUT=<file.cpp> -DSYMBOL=<name> -P EmbedSpirv.cmake
# Writes the SPIR-V words of SPV as `extern const uint32_t SYMBOL[]` (little-endian file).
file(READ ${SPV} hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR rem "${nhex} % 8")
if(NOT rem EQUAL 0 OR nhex EQUAL 0)
  message(FATAL_ERROR "${SPV}: not a SPIR-V module (size not a multiple of 4 bytes)")
endif()
math(EXPR nwords "${nhex} / 8")
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," words "${hex}")
string(REGEX REPLACE "(0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,0x[0-9a-f]+u,)" "\\1\n" words "${words}")  # 8 words a line
file(WRITE ${OUT} "// Generated from ${SPV} by cmake/EmbedSpirv.cmake. Do not edit.
#include <cstddef>
#include <cstdint>
extern const uint32_t ${SYMBOL}[] = {
${words}};
extern const size_t ${SYMBOL}_words = ${nwords};
")
