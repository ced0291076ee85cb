// The one exception type of loader/ and runtime/: its message names the problem (file, tensor,
// key, expected vs found). Tools catch it at the top, print it and exit non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace qgemma {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace qgemma
