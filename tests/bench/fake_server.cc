#include "tests/bench/fake_server.h"

#include <algorithm>
#include <cstdio>

#include "boost/asio/read.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/write.hpp"
#include "nlohmann/json.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

std::string Event(const nlohmann::json& j) { return "data: " + j.dump() + "\n\n"; }

std::string ChunkEvent(const Script& s, int i) {
  nlohmann::json choice = {{"index", 0}, {"finish_reason", nullptr}};
  const std::string text = "t" + std::to_string(i);
  if (s.chat) {
    choice["delta"] = {{"content", text}};
  } else {
    choice["text"] = text;
  }
  return Event({{"object", "text_completion"}, {"choices", {choice}}});
}

SteadyClock::duration Ms(double ms) {
  return std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double, std::milli>(ms));
}

}  // namespace

FakeServer::FakeServer(std::function<Script(const std::string&)> script_for)
    : script_for_(std::move(script_for)),
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeServer::~FakeServer() {
  stop_ = true;
  cv_.notify_all();
  {  // wake the blocking accept
    asio::io_context io;
    tcp::socket s(io);
    boost::system::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)), ec);
  }
  accept_thread_.join();
  std::vector<std::thread> handlers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handlers.swap(handlers_);
  }
  for (std::thread& t : handlers) t.join();
}

std::vector<Served> FakeServer::served() const {
  std::lock_guard<std::mutex> lock(mu_);
  return served_;
}

void FakeServer::AcceptLoop() {
  while (!stop_) {
    tcp::socket socket(io_);
    boost::system::error_code ec;
    acceptor_.accept(socket, ec);
    const SteadyClock::time_point accepted = SteadyClock::now();
    if (ec || stop_) return;
    std::lock_guard<std::mutex> lock(mu_);
    handlers_.emplace_back(
        [this, accepted, s = std::move(socket)]() mutable { Handle(std::move(s), accepted); });
  }
}

bool FakeServer::SleepUntil(SteadyClock::time_point t) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_until(lock, t, [this] { return stop_.load(); });
}

void FakeServer::Handle(tcp::socket socket, std::chrono::steady_clock::time_point t0) {
  const int64_t now_open = ++open_;
  int64_t seen = max_concurrent_.load();
  while (now_open > seen && !max_concurrent_.compare_exchange_weak(seen, now_open)) {
  }
  socket.set_option(tcp::no_delay(true));
  boost::system::error_code ec;
  std::string buf;
  const size_t header_end = asio::read_until(socket, asio::dynamic_buffer(buf), "\r\n\r\n", ec);
  if (ec) --open_;
  if (!ec) {
    std::string headers = buf.substr(0, header_end);
    std::transform(headers.begin(), headers.end(), headers.begin(), ::tolower);
    size_t length = 0;
    const size_t cl = headers.find("content-length:");
    if (cl != std::string::npos) length = std::stoul(headers.substr(cl + 15));
    if (buf.size() < header_end + length) {
      asio::read(socket, asio::dynamic_buffer(buf),
                 asio::transfer_exactly(header_end + length - buf.size()), ec);
    }
    const std::string body = buf.substr(header_end, length);
    ++num_requests_;
    Served served{body, {}};
    const Script s = script_for_(body);
    auto send = [&](const std::string& data) {
      if (!s.chunked) return asio::write(socket, asio::buffer(data), ec), void();
      char size[32];
      std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
      asio::write(socket, asio::buffer(size + data + "\r\n"), ec);
    };
    std::string head = "HTTP/1.1 " + std::to_string(s.status) + " X\r\n";
    head += s.status == 200 ? "Content-Type: text/event-stream\r\n"
                            : "Content-Type: application/json\r\n";
    const std::string error_body = R"({"error":{"message":"scripted failure"}})";
    if (s.chunked) {
      head += "Transfer-Encoding: chunked\r\n";
    } else if (s.status != 200) {
      head += "Content-Length: " + std::to_string(error_body.size()) + "\r\n";
    }
    head += "Connection: close\r\n\r\n";
    asio::write(socket, asio::buffer(head), ec);
    if (s.status != 200) {
      --open_;  // before the client can see the end of this response
      send(error_body);
    } else {
      SteadyClock::time_point t = t0 + Ms(s.ttft_ms);
      for (size_t i = 0; i <= s.gaps_ms.size() && !ec; ++i) {
        if (i > 0) t += Ms(s.gaps_ms[i - 1]);
        if (!SleepUntil(t)) break;
        send(ChunkEvent(s, static_cast<int>(i)));
        served.sent_ms.push_back(
            std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
      }
      if (s.completion_tokens >= 0) {
        send(Event(
            {{"choices", nlohmann::json::array()},
             {"usage",
              {{"prompt_tokens", s.prompt_tokens}, {"completion_tokens", s.completion_tokens}}}}));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        served_.push_back(std::move(served));
      }
      --open_;
      send("data: [DONE]\n\n");
    }
    if (s.chunked) asio::write(socket, asio::buffer(std::string("0\r\n\r\n")), ec);
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace sluice::bench
