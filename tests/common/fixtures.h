// Locating test fixtures: ../shared (SLUICE_SHARED_DIR) and the repository root
// (SLUICE_SOURCE_ROOT), both set by ctest.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"

namespace sluice::testing {

inline std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

inline std::string SharedDir() { return EnvOr("SLUICE_SHARED_DIR", "../shared"); }
inline std::string SourceRoot() { return EnvOr("SLUICE_SOURCE_ROOT", "."); }
inline std::string TinyModelDir() { return SourceRoot() + "/models/sluice-tiny-code"; }

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open fixture %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json ReadJsonOrDie(const std::string& path) {
  return nlohmann::json::parse(ReadFileOrDie(path));
}

}  // namespace sluice::testing
