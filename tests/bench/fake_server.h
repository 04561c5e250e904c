// An in-process fake OpenAI streaming server on loopback with scripted chunk timings,
// for testing sluice-bench's measurements. Blocking sockets, one thread per connection.
#ifndef SLUICE_TESTS_BENCH_FAKE_SERVER_H_
#define SLUICE_TESTS_BENCH_FAKE_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"

namespace sluice::bench {

// How the server answers one request. Times are from the moment the connection was
// accepted; each chunk is one SSE event with a one-element `choices` array.
struct Script {
  int status = 200;
  double ttft_ms = 0;           // first chunk
  std::vector<double> gaps_ms;  // each later chunk, after the previous one
  int64_t prompt_tokens = 7;
  int64_t completion_tokens = -1;  // usage.completion_tokens; -1: send no usage event
  bool chunked = true;             // Transfer-Encoding: chunked, else close-delimited (status 200)
                                   // or Content-Length (an error status)
  bool chat = false;               // delta.content instead of text
};

// What the server did for one request.
struct Served {
  std::string body;
  std::vector<double> sent_ms;  // when each chunk was written, ms after the accept
};

class FakeServer {
 public:
  // `script_for(body)` picks the answer from the request body.
  explicit FakeServer(std::function<Script(const std::string& body)> script_for);
  // Stops accepting, wakes sleeping handlers and joins every thread.
  ~FakeServer();

  int port() const { return port_; }
  // The most connections open at the same time so far.
  int64_t max_concurrent() const { return max_concurrent_.load(); }
  int64_t num_requests() const { return num_requests_.load(); }
  // Requests answered so far, in the order they finished.
  std::vector<Served> served() const;

 private:
  void AcceptLoop();
  // Answers one connection; the script's times count from `accepted`.
  void Handle(boost::asio::ip::tcp::socket socket, std::chrono::steady_clock::time_point accepted);
  // Sleeps until `t` or until Stop; false when stopped.
  bool SleepUntil(std::chrono::steady_clock::time_point t);

  std::function<Script(const std::string&)> script_for_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> open_{0}, max_concurrent_{0}, num_requests_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Served> served_;         // guarded by mu_
  std::vector<std::thread> handlers_;  // guarded by mu_
  std::thread accept_thread_;
};

}  // namespace sluice::bench

#endif  // SLUICE_TESTS_BENCH_FAKE_SERVER_H_
