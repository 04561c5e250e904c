// The HTTP server's connection life cycle over real sockets: a stream still being written
// when accepting stops, a client that leaves mid-stream, what a handler leaves to run on a
// departure once its response has ended; and its bounds: answers on the headers alone with
// the body discarded, transfer codings it cannot frame, the connection cap, the header
// and body deadlines.
#include "net/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::http {
namespace {

using std::chrono::milliseconds;

// A blocking client socket with a receive timeout, so a lost response fails the test.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { Close(); }
  bool connected() const { return connected_; }

  void Send(const std::string& bytes) {
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  // False once the connection is gone (no SIGPIPE).
  bool TrySend(const std::string& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until `marker` has arrived (true) or the connection ends or times out (false).
  bool ReadUntil(const std::string& marker) {
    char buf[4096];
    while (received_.find(marker) == std::string::npos) {
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return false;
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  const std::string& received() const { return received_; }
  // Whether the server closed the connection within `timeout` (reading what comes).
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
      if (n > 0) received_.append(buf, static_cast<size_t>(n));
    }
    return false;
  }
  void SetReadTimeout(std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>(t.count() % 1000 * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

// Hands the writer of the latest request to the test thread.
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<ResponseWriter> writer;
  bool gone = false;

  std::shared_ptr<ResponseWriter> Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(5), [this] { return writer != nullptr; });
    return writer;
  }
  bool WaitGone() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [this] { return gone; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    writer.reset();
  }
};

ServerOptions Options() {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.num_threads = 2;
  return o;
}

// Streams on /stream and hands the writer over; answers anything else at once.
Handler StreamingHandler(Exchange* ex) {
  return [ex](const Request& req, std::shared_ptr<ResponseWriter> w) {
    if (req.target != "/stream") {
      w->Send(200, "text/plain", "next:" + req.target);
      return;
    }
    w->OnClientGone([ex] {
      std::lock_guard<std::mutex> lock(ex->mu);
      ex->gone = true;
      ex->cv.notify_all();
    });
    w->StartStream(200, "text/event-stream");
    std::lock_guard<std::mutex> lock(ex->mu);
    ex->writer = w;
    ex->cv.notify_all();
  };
}

// A server streaming on /stream, and a client connected to it. The writer is released
// before the server stops, on every way out of a test: a writer may not outlive its server.
class HttpStreamTest : public ::testing::Test {
 protected:
  HttpStreamTest() : server_(Options(), StreamingHandler(&ex_)) {}
  ~HttpStreamTest() override {
    ex_.Release();
    server_.Stop();
  }

  // Starts a stream; its writer once the client has the response's headers (null if not).
  std::shared_ptr<ResponseWriter> OpenStream() {
    if (!server_.Start().ok()) return nullptr;
    client_.emplace(server_.port());
    if (!client_->connected()) return nullptr;
    client_->Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    if (!client_->ReadUntil("\r\n\r\n")) return nullptr;
    return ex_.Wait();
  }

  Exchange ex_;
  Server server_;
  std::optional<Client> client_;
};

TEST_F(HttpStreamTest, AStreamInProgressFinishesAfterAcceptingStops) {
  std::shared_ptr<ResponseWriter> writer = OpenStream();
  ASSERT_NE(writer, nullptr);
  Client& client = *client_;
  // A pipelined request ends the watch for departures, so the connection has no
  // operation of its own pending while the stream waits for its next chunk ...
  client.Send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
  std::this_thread::sleep_for(milliseconds(100));
  // ... and, the acceptor closed, nothing else is pending in the server either.
  server_.StopAccepting();
  std::this_thread::sleep_for(milliseconds(200));
  writer->WriteChunk("data: last\n\n");
  writer->EndStream();
  writer.reset();
  EXPECT_TRUE(client.ReadUntil("0\r\n\r\n")) << "the stream never ended: " << client.received();
  EXPECT_NE(client.received().find("data: last"), std::string::npos);
  // The pipelined request is answered after it, on the same connection.
  EXPECT_TRUE(client.ReadUntil("next:/after")) << client.received();
  EXPECT_FALSE(ex_.gone);
}

TEST_F(HttpStreamTest, AClientLeavingMidStreamIsReported) {
  std::shared_ptr<ResponseWriter> writer = OpenStream();
  ASSERT_NE(writer, nullptr);
  writer->WriteChunk("data: one\n\n");
  ASSERT_TRUE(client_->ReadUntil("data: one"));
  client_->Close();
  EXPECT_TRUE(ex_.WaitGone()) << "the departure was never reported";
  writer->WriteChunk("data: to nobody\n\n");  // harmless once the client is gone
  writer->EndStream();
}

TEST(HttpServerTest, WhatRunsOnADepartureIsDroppedUnrunOnceTheResponseEnded) {
  struct Token {};
  auto token = std::make_shared<Token>();
  std::weak_ptr<Token> alive = token;
  Exchange ex;
  Server server(Options(), [&](const Request&, std::shared_ptr<ResponseWriter> w) {
    // The callback holds a resource, as a proxy's would hold its upstream call.
    w->OnClientGone([&ex, held = std::move(token)] {
      std::lock_guard<std::mutex> lock(ex.mu);
      ex.gone = true;
    });
    w->Send(200, "text/plain", "done");
  });
  ASSERT_TRUE(server.Start().ok());
  Client client(server.port());
  ASSERT_TRUE(client.connected());
  client.Send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");  // keep-alive
  ASSERT_TRUE(client.ReadUntil("done"));
  for (int i = 0; i < 100 && !alive.expired(); ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(alive.expired()) << "the callback outlived the response";
  client.Close();  // after the response: not a departure mid-response
  std::this_thread::sleep_for(milliseconds(200));
  server.Stop();
  std::lock_guard<std::mutex> lock(ex.mu);
  EXPECT_FALSE(ex.gone);
}

TEST(HttpServerTest, AnAnswerOnTheHeadersDiscardsTheBodyUnread) {
  std::atomic<int> handled{0};
  ServerOptions o = Options();
  o.max_body_bytes = 64 << 20;
  o.header_check = [](const Request& r) -> std::optional<EarlyAnswer> {
    if (r.Header("Authorization") == "ok") return std::nullopt;
    return EarlyAnswer{401, "application/json", R"({"error":"no key"})", {}};
  };
  Server server(o, [&](const Request& r, std::shared_ptr<ResponseWriter> w) {
    ++handled;
    w->Send(200, "text/plain", "got " + std::to_string(r.body.size()));
  });
  ASSERT_TRUE(server.Start().ok());
  // 32 MiB sent without a key: the client sees the 401 (not a reset) and the handler nothing.
  const std::string body(32 << 20, 'x');
  Client refused(server.port());
  ASSERT_TRUE(refused.connected());
  refused.Send("POST /v1/x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\n\r\n");
  refused.Send(body);
  EXPECT_TRUE(refused.ReadUntil("no key")) << refused.received();
  EXPECT_EQ(refused.received().rfind("HTTP/1.1 401", 0), 0u);
  EXPECT_NE(refused.received().find("Connection: close"), std::string::npos);
  EXPECT_TRUE(refused.ClosedWithin(milliseconds(3000)));
  EXPECT_EQ(handled.load(), 0);
  // With the key, the body is read and handed over; Expect: 100-continue is answered.
  Client admitted(server.port());
  admitted.Send(
      "POST /v1/x HTTP/1.1\r\nHost: t\r\nAuthorization: ok\r\nExpect: 100-continue\r\n"
      "Content-Length: 5\r\n\r\n");
  ASSERT_TRUE(admitted.ReadUntil("100 Continue\r\n\r\n")) << admitted.received();
  admitted.Send("hello");
  EXPECT_TRUE(admitted.ReadUntil("got 5")) << admitted.received();
  server.Stop();
}

TEST(HttpServerTest, TransferCodingsOtherThanChunkedAreNotImplemented) {
  Server server(Options(), [](const Request&, std::shared_ptr<ResponseWriter> w) {
    w->Send(200, "text/plain", "handled");
  });
  ASSERT_TRUE(server.Start().ok());
  for (const char* coding : {"xchunked", "gzip, chunked", "identity"}) {
    Client c(server.port());
    c.Send(std::string("POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ") + coding +
           "\r\n\r\n0\r\n\r\n");
    c.ReadUntil("\r\n\r\n");
    EXPECT_EQ(c.received().rfind("HTTP/1.1 501", 0), 0u) << coding << ": " << c.received();
  }
  Client chunked(server.port());
  chunked.Send(
      "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\n");
  EXPECT_TRUE(chunked.ReadUntil("handled")) << chunked.received();
  server.Stop();
}

TEST(HttpServerTest, AtTheConnectionCapNewConnectionsWaitUntilOneCloses) {
  ServerOptions o = Options();
  o.max_connections = 3;
  Server server(o, [](const Request&, std::shared_ptr<ResponseWriter> w) {
    w->Send(200, "text/plain", "served");
  });
  ASSERT_TRUE(server.Start().ok());
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<Client>(server.port()));
  for (int i = 0; i < 100 && server.num_connections() < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(server.num_connections(), 3u);
  Client waiting(server.port());  // connects into the backlog
  waiting.SetReadTimeout(milliseconds(500));
  waiting.Send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_FALSE(waiting.ReadUntil("served")) << "answered past the cap";
  EXPECT_EQ(server.num_connections(), 3u);
  idle[0]->Close();
  waiting.SetReadTimeout(milliseconds(3000));
  EXPECT_TRUE(waiting.ReadUntil("served")) << "still waiting after a connection closed";
  server.Stop();
}

TEST(HttpServerTest, SlowHeadersAndSlowBodiesAreCutOff) {
  ServerOptions o = Options();
  o.header_timeout = milliseconds(300);
  o.body_timeout = milliseconds(300);
  o.idle_timeout = milliseconds(5000);
  Server server(o, [](const Request&, std::shared_ptr<ResponseWriter> w) {
    w->Send(200, "text/plain", "served");
  });
  ASSERT_TRUE(server.Start().ok());
  // Idle before the first byte: the idle timeout, not the header one, applies.
  Client idle(server.port());
  std::this_thread::sleep_for(milliseconds(600));
  idle.Send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_TRUE(idle.ReadUntil("served"));
  // A header that trickles in past the deadline is cut off, though bytes keep coming.
  Client slow(server.port());
  slow.Send("GET /x HTTP/1.1\r\nHost: t\r\n");
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 20 && !closed; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    closed = !slow.TrySend("X-Trickle: 1\r\n") || slow.ClosedWithin(milliseconds(5));
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(closed) << "a trickling header kept its connection";
  EXPECT_LT(waited, 1.5);
  // A body that stops halfway is cut off too.
  Client body(server.port());
  body.Send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_TRUE(body.ClosedWithin(milliseconds(2000)));
  EXPECT_EQ(body.received().find("served"), std::string::npos);
  server.Stop();
}

}  // namespace
}  // namespace sluice::http
