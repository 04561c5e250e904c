// The HTTP server's connection life cycle over real sockets: a stream still being written
// when accepting stops, a client that leaves mid-stream, and what a handler leaves to run
// on a departure once its response has ended.
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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

}  // namespace
}  // namespace sluice::http
