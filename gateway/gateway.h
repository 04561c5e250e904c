// The gateway: authenticates each request by API key, applies its tenant's quotas, salts
// the prefix cache per tenant and relays the request to the upstream server, streaming
// SSE through event by event. Its admin handler serves /health, /ready and /metrics.
// Thread safety: Handle and HandleAdmin run on the HTTP servers' threads, concurrently.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gateway/quota.h"
#include "gateway/tenants.h"
#include "gateway/upstream.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/http/http_server.h"

namespace sluice::gateway {

struct GatewayOptions {
  std::string upstream_host = "127.0.0.1";
  int upstream_port = 8000;
  std::string keys_path;
  int upstream_threads = 2;
};

class Gateway {
 public:
  // Resolves the upstream and loads the keys file; errors name what is wrong.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(GatewayOptions options);
  ~Gateway();

  void Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);
  void HandleAdmin(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);

  // Rereads the keys file; on an error the previous tenants stay and the error says why.
  absl::Status Reload();
  size_t num_tenants() const;
  int64_t in_flight() const { return in_flight_.load(); }

 private:
  explicit Gateway(GatewayOptions options);
  std::shared_ptr<const TenantTable> tenants() const;
  void Proxy(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
             const Tenant& tenant, bool quota);
  http::Headers RateLimitHeaders(const QuotaSnapshot& q) const;
  void Count(const std::string& tenant, int status);

  GatewayOptions options_;
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
