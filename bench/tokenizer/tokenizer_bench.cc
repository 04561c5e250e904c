// Encode throughput of one tokenizer.json on one text file, one thread.
//
// Usage: tokenizer_bench --tokenizer DIR --corpus FILE [--runs N] [--ids-out FILE]
//                        [--chunk-bytes N]
// Prints the machine, then one line per run and a summary line:
//   result mb_per_s_cold=X mb_per_s_best=Y num_tokens=Z
// --ids-out writes the ids of the corpus as little-endian int32 for a parity check.
// --chunk-bytes N encodes the corpus as separate texts, each ending at the first newline
// at or after N bytes (hf_encode.py cuts the same way); 0 (default) encodes it whole.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/tokenizer/tokenizer.h"

namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// Cuts `text` into chunks that end at the first '\n' at or after `chunk_bytes` bytes.
std::vector<std::string_view> Chunks(std::string_view text, size_t chunk_bytes) {
  if (chunk_bytes == 0) return {text};
  std::vector<std::string_view> chunks;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', std::min(text.size(), start + chunk_bytes));
    end = end == std::string_view::npos ? text.size() : end + 1;
    chunks.push_back(text.substr(start, end - start));
    start = end;
  }
  return chunks;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenizer_bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, corpus_path, ids_out;
  int runs = 3;
  size_t chunk_bytes = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--tokenizer") {
      dir = argv[i + 1];
    } else if (flag == "--corpus") {
      corpus_path = argv[i + 1];
    } else if (flag == "--runs") {
      runs = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--chunk-bytes") {
      chunk_bytes = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--ids-out") {
      ids_out = argv[i + 1];
    } else {
      return Fail("unknown flag " + flag);
    }
  }
  if (dir.empty() || corpus_path.empty()) {
    return Fail("usage: --tokenizer DIR --corpus FILE [--runs N] [--ids-out FILE]");
  }
  std::ifstream in(corpus_path, std::ios::binary);
  if (!in) return Fail("cannot read " + corpus_path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string corpus = buffer.str();

  auto tokenizer = sluice::Tokenizer::FromDir(dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  std::printf("machine: %s, %u hardware threads; 1 thread used\n", CpuModel().c_str(),
              std::thread::hardware_concurrency());
  const std::vector<std::string_view> chunks = Chunks(corpus, chunk_bytes);
  std::printf("%zu text(s) of up to ~%zu bytes\n", chunks.size(),
              chunk_bytes == 0 ? corpus.size() : chunk_bytes);
  const double mb = static_cast<double>(corpus.size()) / 1e6;
  double cold = 0, best = 0;
  std::vector<int32_t> ids;
  for (int run = 0; run < runs; ++run) {
    ids.clear();
    const auto start = std::chrono::steady_clock::now();
    for (std::string_view chunk : chunks) {
      auto encoded = (*tokenizer)->Encode(chunk, /*add_special_tokens=*/false);
      if (!encoded.ok()) return Fail(encoded.status().ToString());
      ids.insert(ids.end(), encoded->begin(), encoded->end());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = mb / seconds;
    if (run == 0) cold = rate;
    best = std::max(best, rate);
    std::printf("run %d: %.2f MB in %.3f s = %.2f MB/s, %zu tokens\n", run, mb, seconds, rate,
                ids.size());
    std::fflush(stdout);
  }
  if (!ids_out.empty()) {
    std::ofstream out(ids_out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(ids.data()),
              static_cast<std::streamsize>(ids.size() * sizeof(int32_t)));
    if (!out) return Fail("cannot write " + ids_out);
  }
  std::printf("result mb_per_s_cold=%.3f mb_per_s_best=%.3f num_tokens=%zu\n", cold, best,
              ids.size());
  return 0;
}
