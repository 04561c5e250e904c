// One HTTP/1.1 exchange with the upstream server on the gateway's own I/O threads: the
// response's status and headers, then its body piece by piece as bytes arrive (chunked
// encoding removed), so an SSE stream is relayed without waiting for more.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/http/http_server.h"

namespace sluice::gateway {

struct UpstreamRequest {
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  http::Headers headers;  // Host and Content-Length are set by the call
};

struct UpstreamCallbacks {
  std::function<void(int status, const http::Headers& headers)> on_headers;
  std::function<void(std::string_view data)> on_body;
  std::function<void(const absl::Status& status)> on_done;  // exactly once, last
};

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Closes the connection; on_done follows with a CANCELLED status unless it already ran.
  // Thread safety: any thread.
  virtual void Cancel() = 0;
};

// Starts the exchange; callbacks run on `ioc`'s threads, serialised.
std::shared_ptr<UpstreamCall> StartUpstream(boost::asio::io_context& ioc,
                                            const boost::asio::ip::tcp::endpoint& upstream,
                                            const std::string& host_header, UpstreamRequest req,
                                            UpstreamCallbacks callbacks);

}  // namespace sluice::gateway
