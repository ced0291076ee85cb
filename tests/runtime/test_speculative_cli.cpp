// `qgemma synth --preset tiny-assistant`, `run --draft` (explicit and auto), `chat --draft` and
// `bench --draft`, run as the built binary on a tiny synthetic Q8_0 target.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace qgemma {
namespace {

const std::string kQgemma = std::string(QGEMMA_BINARY_DIR) + "/tools/qgemma";
const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_speculative_cli_tmp";

struct Result {
  int rc;
  std::string out, err;
};

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result run(const std::string& args, const std::string& stdin_text = "") {
  const std::string out = kDir + "/stdout.txt", err = kDir + "/stderr.txt";
  std::string cmd = kQgemma + " " + args + " > " + out + " 2> " + err;
  if (!stdin_text.empty()) {
    std::ofstream(kDir + "/stdin.txt") << stdin_text;
    cmd += " < " + kDir + "/stdin.txt";
  }
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

class SpeculativeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::filesystem::create_directories(kDir);
    ASSERT_TRUE(std::filesystem::exists(kQgemma)) << kQgemma << " is missing: build qgemma";
    ASSERT_EQ(run("synth -o " + kDir + "/tiny.gguf --preset tiny --type q8_0").rc, 0);
    ASSERT_EQ(
        run("synth -o " + kDir + "/tiny-assistant.gguf --preset tiny-assistant --type q8_0").rc, 0);
  }
};

TEST_F(SpeculativeCli, RunWithDraftPrintsSameIdsAndStats) {
  const std::string base =
      "run -m " + kDir + "/tiny.gguf -p \"hello world\" --raw --temp 0 -n 30 --print-ids -t 2";
  const Result plain = run(base);
  ASSERT_EQ(plain.rc, 0) << plain.err;
  for (const std::string draft : {kDir + "/tiny-assistant.gguf", std::string("auto")}) {
    const Result spec = run(base + " --draft " + draft + " --draft-max 3");
    ASSERT_EQ(spec.rc, 0) << spec.err;
    EXPECT_EQ(last_line(spec.out), last_line(plain.out));
    EXPECT_NE(spec.err.find("acceptance per draft position"), std::string::npos) << spec.err;
    EXPECT_NE(spec.err.find("tiny-assistant.gguf"), std::string::npos) << spec.err;
  }
}

TEST_F(SpeculativeCli, RefusesATargetAsDrafter) {
  const Result r =
      run("run -m " + kDir + "/tiny.gguf -p hi --raw -n 4 --draft " + kDir + "/tiny.gguf");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("gemma4-assistant"), std::string::npos) << r.err;
}

TEST_F(SpeculativeCli, ChatWithDraftMatchesPlainChat) {
  const std::string base = "chat -m " + kDir + "/tiny.gguf --temp 0 -n 12 -t 2";
  const std::string in = "hello world\nthe model\n/exit\n";
  const Result plain = run(base, in);
  const Result spec = run(base + " --draft " + kDir + "/tiny-assistant.gguf", in);
  ASSERT_EQ(plain.rc, 0) << plain.err;
  ASSERT_EQ(spec.rc, 0) << spec.err;
  EXPECT_EQ(spec.out, plain.out);
  EXPECT_NE(spec.err.find("speculative"), std::string::npos) << spec.err;
}

TEST_F(SpeculativeCli, BenchReportsTheCostModel) {
  const Result r = run("bench -m " + kDir + "/tiny.gguf -p 0 -n 24 -r 1 --no-bandwidth -t 2 " +
                       "--draft " + kDir + "/tiny-assistant.gguf --draft-max 3");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("cost model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 3 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("forced 70% acceptance"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qgemma
