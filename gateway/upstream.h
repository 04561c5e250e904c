// One HTTP/1.1 exchange with the upstream server on the gateway's own I/O threads: the
// response's status and headers, then its body piece by piece as bytes arrive (chunked
// encoding removed), so an SSE stream is relayed without waiting for more. Connections
// are kept alive and reused through a pool: a connect and a close per request cost more
// than the relaying itself.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "net/http_server.h"

namespace sluice::gateway {

struct UpstreamRequest {
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  http::Headers headers;  // Host and Content-Length are set by the call
  // How long the upstream may keep the call waiting: for the first byte of its answer,
  // then for each next piece of the body. Past it the call ends DEADLINE_EXCEEDED.
  std::chrono::milliseconds timeout{30'000};
};

struct UpstreamCallbacks {
  std::function<void(int status, const http::Headers& headers)> on_headers;
  std::function<void(std::string_view data)> on_body;
  // Exactly once, last. OK: the whole answer came. CANCELLED: Cancel. DEADLINE_EXCEEDED:
  // the upstream went quiet past the timeout. UNAVAILABLE: the connection failed.
  std::function<void(const absl::Status& status)> on_done;
};

// Idle keep-alive connections to the upstream. Thread safety: any thread.
class UpstreamPool {
 public:
  UpstreamPool(boost::asio::io_context& ioc, boost::asio::ip::tcp::endpoint endpoint,
               std::string host_header, size_t max_idle = 64);
  ~UpstreamPool();
  boost::asio::io_context& ioc() { return ioc_; }
  const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }
  const std::string& host_header() const { return host_header_; }

  // An idle connection, if one is fresh enough to trust.
  std::optional<boost::asio::ip::tcp::socket> Take();
  void Give(boost::asio::ip::tcp::socket socket);

 private:
  struct Idle;
  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::string host_header_;
  size_t max_idle_;
  std::mutex mu_;
  std::deque<Idle> idle_;
};

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Closes the connection; on_done follows with a CANCELLED status unless it already ran.
  // Thread safety: any thread.
  virtual void Cancel() = 0;
};

// Starts the exchange on a pooled connection (or a new one); callbacks run on the pool's
// io_context threads, serialised. A reused connection that turns out closed before any
// answer arrived is replaced by a new one, once.
std::shared_ptr<UpstreamCall> StartUpstream(UpstreamPool& pool, UpstreamRequest req,
                                            UpstreamCallbacks callbacks);

}  // namespace sluice::gateway
