// An asynchronous HTTP/1.1 server on Boost.Beast: a few I/O threads serve any number of
// connections and SSE streams. Handlers answer through a ResponseWriter, either at once
// or later from any thread; a client that disconnects is reported to the handler.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
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

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;
  int num_threads = 2;
  size_t max_body_bytes = 1 << 20;
};

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();

  // Binds and starts the I/O threads. Errors name the address.
  absl::Status Start();
  // The bound port (useful with port 0).
  int port() const;
  // Stops accepting; responses in progress and open connections go on until Stop.
  void StopAccepting();
  // Stops every thread; connections close.
  void Stop();

  struct Impl;  // the Asio state; public so connection objects can reach it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http
