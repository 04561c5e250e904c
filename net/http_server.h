// An asynchronous HTTP/1.1 server on Boost.Beast: a few I/O threads serve any number of
// connections and SSE streams. Handlers answer through a ResponseWriter, either at once
// or later from any thread; a client that disconnects is reported to the handler.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace sluice::http {

struct Request {
  std::string method;
  std::string target;  // path and query
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(std::string_view name) const;  // case-insensitive; empty if absent
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// How a handler answers. Thread safety: every method may be called from any thread;
// calls are serialised onto the connection. Lifetime: release every writer before the
// Server that made it is destroyed.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // A whole response.
  virtual void Send(int status, std::string content_type, std::string body,
                    Headers headers = {}) = 0;
  // Starts a streamed (chunked) response, e.g. text/event-stream.
  virtual void StartStream(int status, std::string content_type, Headers headers = {}) = 0;
  virtual void WriteChunk(std::string data) = 0;
  virtual void EndStream() = 0;
  // `on_close` runs once, on the connection's strand, if the client goes away before the
  // response ends; once the response has ended it is dropped unrun, with what it holds.
  virtual void OnClientGone(std::function<void()> on_close) = 0;
  // Runs `fn` on the connection's strand, serialised with the calls above.
  virtual void Run(std::function<void()> fn) = 0;
};

using Handler = std::function<void(const Request&, std::shared_ptr<ResponseWriter>)>;

// An answer given on a request's headers alone, before its body is read.
struct EarlyAnswer {
  int status = 400;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;
};
// Looks at a request's method, target and headers (its body is still unread). An answer
// is sent at once, the body is read and discarded without being kept, and the connection
// is closed; nullopt reads the body and calls the Handler.
using HeaderCheck = std::function<std::optional<EarlyAnswer>(const Request&)>;

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;
  int num_threads = 2;
  size_t max_body_bytes = 1 << 20;
  // Open connections at most (0: no cap). At the cap the server stops accepting, and
  // new connections wait in the listen backlog until one closes.
  size_t max_connections = 4096;
  // A kept-alive connection may wait this long for its next request's first byte.
  std::chrono::milliseconds idle_timeout{120'000};
  // From a request's first byte to the end of its headers, and from there to the end of
  // its body. A connection that misses either is closed.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  HeaderCheck header_check;  // optional
  // Told of every answer the server gives by itself (malformed HTTP 400, 413, 501), with
  // its status, so that a front counting its answers counts these too. Optional.
  std::function<void(int status)> on_refused;
};

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();

  // Binds and starts the I/O threads. Errors name the address.
  absl::Status Start();
  // The bound port (useful with port 0).
  int port() const;
  // Connections open now.
  size_t num_connections() const;
  // Stops accepting; responses in progress and open connections go on until Stop.
  void StopAccepting();
  // Stops every thread; connections close.
  void Stop();

  struct Impl;  // the Asio state; public so connection objects can reach it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http
