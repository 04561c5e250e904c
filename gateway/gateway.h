// The gateway: authenticates each request by API key on its headers (before its body is
// read), lets tenants reach the API only, applies their quotas, salts the prefix cache
// per tenant and relays the request to the upstream server, streaming SSE through event
// by event. Its admin handler serves /health, /ready and /metrics.
// Thread safety: CheckHeaders, Handle and HandleAdmin run on the HTTP servers' threads,
// concurrently.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gateway/quota.h"
#include "gateway/salt.h"
#include "gateway/tenants.h"
#include "gateway/upstream.h"
#include "net/http_server.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace sluice::gateway {

struct GatewayOptions {
  std::string upstream_host = "127.0.0.1";
  int upstream_port = 8000;
  std::string keys_path;
  int upstream_threads = 2;
  // The upstream's first byte, and each gap in its answer, past which the client gets 504
  // (or, mid-stream, an error event).
  std::chrono::milliseconds upstream_timeout{30'000};
  std::chrono::milliseconds ready_timeout{2'000};  // for the upstream's /ready
  // Completion tokens reserved per sequence for a chat request without max_tokens (the
  // rest is charged as the answer streams). Completions default to the engine's 16.
  int64_t default_reserve_tokens = 256;
  std::string salt_secret_file;  // empty: a random secret for this process's lifetime
};

class Gateway {
 public:
  // Resolves the upstream, loads the keys file and the salt secret; errors name what is
  // wrong.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(GatewayOptions options);
  ~Gateway();

  // On the public port's headers: 401 without a valid key, 404 outside the API.
  std::optional<http::EarlyAnswer> CheckHeaders(const http::Request& req);
  void Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);
  // Counts an answer the public port's HTTP server gave by itself (malformed, too large).
  void CountRefusedByServer(int status);
  void HandleAdmin(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);

  // Rereads the keys file; on an error the previous tenants stay and the error says why.
  absl::Status Reload();
  size_t num_tenants() const;
  int64_t in_flight() const { return in_flight_.load(); }

 private:
  struct Exchange;
  explicit Gateway(GatewayOptions options);
  std::shared_ptr<const TenantTable> tenants() const;
  // The tenant of `req`'s key, or the 401 to send.
  std::optional<Tenant> Authenticate(const http::Request& req,
                                     std::optional<http::EarlyAnswer>* refusal);
  // The tenant, if it may go on: authenticated and on a path tenants may reach.
  std::optional<Tenant> Gate(const http::Request& req, std::optional<http::EarlyAnswer>* refusal);
  std::optional<http::EarlyAnswer> Refuse(const std::string& tenant, const char* reason, int status,
                                          http::EarlyAnswer answer);
  // The cost of a completion request, or the 400 to send.
  std::optional<Cost> CompletionCost(const http::Request& req, const Tenant& tenant, bool chat,
                                     std::string* body, std::optional<http::EarlyAnswer>* refusal,
                                     struct CompletionShape* shape);
  http::EarlyAnswer QuotaRefusal(const Tenant& tenant, const Admission& a, const Cost& cost);
  void Proxy(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
             std::shared_ptr<Exchange> ex, std::string body);
  void Finish(Exchange& ex, const absl::Status& status);
  http::Headers RateLimitHeaders(const QuotaSnapshot& q) const;
  void Count(const std::string& tenant, int status);

  GatewayOptions options_;
  std::optional<SaltKey> salt_;
  std::unique_ptr<UpstreamPool> pool_;
  mutable std::mutex tenants_mu_;
  std::shared_ptr<const TenantTable> tenants_;
  QuotaManager quotas_;
  std::atomic<int64_t> in_flight_{0};

  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;

 public:
  std::shared_ptr<prometheus::Registry> registry;

 private:
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Counter>* refusals_;
  prometheus::Family<prometheus::Counter>* reloads_;
  prometheus::Family<prometheus::Gauge>* in_flight_gauge_;
};

}  // namespace sluice::gateway
