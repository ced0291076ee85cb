// The SPIR-V modules embedded in the library by cmake/Shaders.cmake: one per shaders/<name>.comp,
// or one per compile-time variant (<name>_<variant>, e.g. mul_mat_vec_q4_0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace qgemma::vk {

struct ShaderModuleWords {
  const char* name;
  const uint32_t* words;
  size_t count;
};

// All embedded modules (generated registry).
std::span<const ShaderModuleWords> embedded_shaders();
// The module called `name`; throws qgemma::Error naming it when there is none.
const ShaderModuleWords& find_shader(std::string_view name);

}  // namespace qgemma::vk
