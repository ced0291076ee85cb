// Subcommand registry of the `qgemma` program. Each tools/cmd_<name>.cpp registers itself:
//
//   static const bool registered = qgemma::register_command(
//       "info", "Print a GGUF file's metadata and tensors",
//       [](CLI::App& app, std::function<int()>& run) {
//         auto opt = std::make_shared<InfoOptions>();
//         app.add_option("file", opt->path)->required();
//         run = [opt] { return run_info(*opt); };
//       });
//
// main() parses the command line, runs the chosen command and turns a qgemma::Error into a
// message on stderr and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace qgemma {

using CommandSetup = void (*)(CLI::App& app, std::function<int()>& run);
bool register_command(const char* name, const char* help, CommandSetup setup);

}  // namespace qgemma
