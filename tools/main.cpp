#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "loader/error.h"
#include "tools/command.h"

namespace qgemma {
namespace {

struct Registered {
  const char* name;
  const char* help;
  CommandSetup setup;
};

std::vector<Registered>& registry() {
  static std::vector<Registered> r;
  return r;
}

}  // namespace

bool register_command(const char* name, const char* help, CommandSetup setup) {
  registry().push_back({name, help, setup});
  return true;
}

}  // namespace qgemma

int main(int argc, char** argv) {
  CLI::App app{"qgemma: Gemma 4 12B inference on laptop CPUs and Vulkan GPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qgemma 0.1.0");
  std::map<CLI::App*, std::function<int()>> runs;
  for (const auto& r : qgemma::registry()) {
    CLI::App* sub = app.add_subcommand(r.name, r.help);
    r.setup(*sub, runs[sub]);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runs) {
      if (sub->parsed() && run) return run();
    }
    std::fprintf(stderr, "qgemma: no command given (see qgemma --help)\n");
    return 2;
  } catch (const qgemma::Error& e) {
    std::fprintf(stderr, "qgemma: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qgemma: internal error: %s\n", e.what());
    return 1;
  }
}
