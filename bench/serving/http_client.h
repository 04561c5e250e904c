// One streamed HTTP/1.1 POST to an OpenAI-compatible server, timed per SSE event
// (Boost.Beast over Asio, C++20 coroutines). Plain http:// only.
#ifndef SLUICE_BENCH_SERVING_HTTP_CLIENT_H_
#define SLUICE_BENCH_SERVING_HTTP_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "bench/serving/metrics.h"
#include "bench/serving/workload.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"

namespace sluice::bench {

using Clock = std::chrono::steady_clock;

// Where requests go.
struct Target {
  std::string host;
  std::string port;
  std::string path;     // e.g. /v1/completions
  std::string api_key;  // sent as "Authorization: Bearer <key>" when set
};

// Parses http://host[:port][/path]. With no path, or a path that does not end in
// "completions", appends v1/completions or v1/chat/completions (after a trailing /v1,
// only the last part) according to `endpoint`.
absl::StatusOr<Target> ParseTarget(const std::string& url, Endpoint endpoint);

// Sends `body` to `target` over a new connection and records the stream. Never throws:
// failures (connect, HTTP status ≠ 200, timeout after `timeout_s`, a bad stream) come
// back as a result with ok = false. start_s is measured from `level_start`.
boost::asio::awaitable<RequestResult> StreamRequest(
    const Target& target, const boost::asio::ip::tcp::resolver::results_type& endpoints,
    const std::string& body, double timeout_s, Clock::time_point level_start);

// Resolves target's host and port (blocking).
absl::StatusOr<boost::asio::ip::tcp::resolver::results_type> Resolve(const Target& target);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_HTTP_CLIENT_H_
