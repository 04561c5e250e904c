// Reads the tokenizer fixtures under $SLUICE_SHARED_DIR for tests.
#ifndef SLUICE_TESTS_ENGINE_TOKENIZER_FIXTURE_CASES_H_
#define SLUICE_TESTS_ENGINE_TOKENIZER_FIXTURE_CASES_H_

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace sluice::testing {

struct TokenizerCase {
  std::string text;
  std::vector<int32_t> ids;
  std::optional<std::vector<int32_t>> ids_with_special;
  std::string decoded;
};

// A tokenizer directory and the file of cases encoded by the reference.
struct TokenizerFixture {
  std::string name;
  std::string dir;
  std::string cases_path;
};

inline std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

inline std::string SharedDir() { return EnvOr("SLUICE_SHARED_DIR", "../shared"); }
inline std::string SourceRoot() { return EnvOr("SLUICE_SOURCE_ROOT", "."); }
inline std::string TinyModelDir() { return SourceRoot() + "/models/sluice-tiny-code"; }

// Contents of `path`, or empty when it cannot be read.
inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The cases of a fixture file ({"cases": [{"text", "ids", ["ids_with_special"],
// "decoded"}]}); empty if the file is missing or malformed.
inline std::vector<TokenizerCase> LoadCases(const std::string& path) {
  std::vector<TokenizerCase> cases;
  const nlohmann::json root =
      nlohmann::json::parse(ReadFileOrEmpty(path), nullptr, /*allow_exceptions=*/false);
  if (!root.is_object() || !root.contains("cases")) return cases;
  for (const nlohmann::json& c : root["cases"]) {
    TokenizerCase tc;
    tc.text = c.value("text", "");
    tc.ids = c.value("ids", std::vector<int32_t>{});
    if (c.contains("ids_with_special")) {
      tc.ids_with_special = c["ids_with_special"].get<std::vector<int32_t>>();
    }
    tc.decoded = c.value("decoded", "");
    cases.push_back(std::move(tc));
  }
  return cases;
}

// The tiny model with its 30 cases, then the three published tokenizers with 62 each.
inline std::vector<TokenizerFixture> AllFixtures() {
  const std::string fixtures = SharedDir() + "/fixtures";
  std::vector<TokenizerFixture> all = {
      {"tiny", TinyModelDir(), fixtures + "/tokenizer_cases.json"}};
  for (const char* name : {"llama3_1", "llama2", "qwen3"}) {
    const std::string dir = fixtures + "/tokenizers/" + name;
    all.push_back({name, dir, dir + "/cases.json"});
  }
  return all;
}

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_ENGINE_TOKENIZER_FIXTURE_CASES_H_
