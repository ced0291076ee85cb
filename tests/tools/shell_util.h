// Running the built `qgemma` program from tests: its path and a shell helper that captures
// stdout + stderr and the exit status.
#pragma once

#include <cstdio>
#include <string>

namespace qgemma::testing_util {

inline const std::string kQgemmaBin = std::string(QGEMMA_BINARY_DIR) + "/tools/qgemma";

struct ShellOutput {
  int status;       // as returned by pclose (0 = success)
  std::string out;  // stdout and stderr interleaved
};

inline ShellOutput sh(const std::string& cmd) {
  ShellOutput o{-1, {}};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) o.out.append(buf, n);
  o.status = pclose(p);
  return o;
}

}  // namespace qgemma::testing_util
