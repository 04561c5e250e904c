// sluice-gateway: the public door in front of `sluice serve` in the same pod. API keys
// (SHA-256 hashes in the keys file, reloaded on SIGHUP or when --keys-poll-s sees it
// change), per-tenant quotas, a streaming proxy with per-tenant prefix-cache salts;
// /health, /ready and /metrics on the admin port.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "gateway/gateway.h"
#include "net/heap_release.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->empty()) *host = "0.0.0.0";
  return absl::SimpleAtoi(s.substr(colon + 1), port) && *port >= 0 && *port < 65536;
}

// The keys file's bytes, read through any symlinks: a Kubernetes Secret volume swaps a
// symlink when the Secret changes, so the path stays and the contents move.
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void Reload(sluice::gateway::Gateway* gw, const char* why) {
  if (absl::Status s = gw->Reload(); s.ok()) {
    spdlog::info("keys file reloaded ({}): {} tenants", why, gw->num_tenants());
  } else {
    spdlog::error("keys file not reloaded ({}), keeping the previous {} tenants: {}", why,
                  gw->num_tenants(), std::string(s.message()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("sluice-gateway"));
  CLI::App app("sluice-gateway: API keys, per-tenant quotas and a streaming proxy for sluice");
  std::string listen = "0.0.0.0:8080", admin_listen = "0.0.0.0:8081",
              upstream = "http://127.0.0.1:8000", keys;
  int threads = 2;
  double keys_poll_s = 0;
  size_t max_connections = 4096;
  double header_timeout_s = 10, body_timeout_s = 30, upstream_timeout_s = 30;
  int64_t default_reserve_tokens = 256;
  std::string salt_secret_file;
  app.add_option("--listen", listen, "HOST:PORT of the public API");
  app.add_option("--admin-listen", admin_listen,
                 "HOST:PORT of /health, /ready and /metrics (unauthenticated)");
  app.add_option("--upstream", upstream, "The sluice server, http://HOST:PORT");
  app.add_option("--keys", keys, "Keys file (JSON; reloaded on SIGHUP)")->required();
  app.add_option("--threads", threads, "I/O threads for each side")->check(CLI::Range(1, 64));
  app.add_option("--keys-poll-s", keys_poll_s,
                 "Reread the keys file this often and reload it when its contents change (0: "
                 "on SIGHUP only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-connections", max_connections,
                 "Open connections at most on each port; past it, new ones wait to be accepted")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--header-timeout-s", header_timeout_s,
                 "Time a client has from its request's first byte to the end of its headers")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--body-timeout-s", body_timeout_s,
                 "Time a client has from the end of its headers to the end of its body")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--upstream-timeout-s", upstream_timeout_s,
                 "Time the upstream has for the first byte of its answer, and for each next "
                 "piece: past it the client gets 504, or an error event mid-stream. A "
                 "non-streamed generation must finish within it")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--default-reserve-tokens", default_reserve_tokens,
                 "Completion tokens reserved per sequence for a chat request without "
                 "max_tokens; use past it is charged as the answer streams")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 31));
  app.add_option("--salt-secret-file", salt_secret_file,
                 "Secret for the per-tenant cache salts (HMAC-SHA256 of the tenant name); "
                 "created, mode 0600, when absent. Unset: a random secret per process");
  CLI11_PARSE(app, argc, argv);

  sluice::gateway::GatewayOptions options;
  options.keys_path = keys;
  options.upstream_threads = threads;
  options.upstream_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(upstream_timeout_s * 1000));
  options.default_reserve_tokens = default_reserve_tokens;
  options.salt_secret_file = salt_secret_file;
  std::string up = upstream;
  if (up.starts_with("http://")) up = up.substr(7);
  if (!up.empty() && up.back() == '/') up.pop_back();
  if (up.find('/') != std::string::npos ||
      !SplitHostPort(up, &options.upstream_host, &options.upstream_port)) {
    spdlog::error("--upstream {}: expected http://HOST:PORT", upstream);
    return 2;
  }
  sluice::http::ServerOptions public_opts, admin_opts;
  if (!SplitHostPort(listen, &public_opts.host, &public_opts.port)) {
    spdlog::error("--listen {}: expected HOST:PORT", listen);
    return 2;
  }
  if (!SplitHostPort(admin_listen, &admin_opts.host, &admin_opts.port)) {
    spdlog::error("--admin-listen {}: expected HOST:PORT", admin_listen);
    return 2;
  }
  public_opts.num_threads = threads;
  public_opts.max_body_bytes = 8 << 20;
  admin_opts.num_threads = 1;
  for (auto* o : {&public_opts, &admin_opts}) {
    o->max_connections = max_connections;
    o->header_timeout = std::chrono::milliseconds(static_cast<int64_t>(header_timeout_s * 1000));
    o->body_timeout = std::chrono::milliseconds(static_cast<int64_t>(body_timeout_s * 1000));
  }

  // Signals are taken by sigwait below, on this thread only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto gateway = sluice::gateway::Gateway::Create(options);
  if (!gateway.ok()) {
    spdlog::error("{}", std::string(gateway.status().message()));
    return 1;
  }
  sluice::gateway::Gateway* gw = gateway->get();
  // Keys and paths are checked on the headers: nothing of an unauthenticated body is kept.
  public_opts.header_check = [gw](const sluice::http::Request& r) { return gw->CheckHeaders(r); };
  public_opts.on_refused = [gw](int status) { gw->CountRefusedByServer(status); };
  sluice::http::Server api(
      public_opts, [gw](const sluice::http::Request& r, auto w) { gw->Handle(r, std::move(w)); });
  sluice::http::Server admin(admin_opts, [gw](const sluice::http::Request& r, auto w) {
    gw->HandleAdmin(r, std::move(w));
  });
  for (auto* server : {&api, &admin}) {
    if (absl::Status s = server->Start(); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
  }
  spdlog::info("listening on {}:{} (admin {}:{}), upstream {}:{}, {} tenants", public_opts.host,
               api.port(), admin_opts.host, admin.port(), options.upstream_host,
               options.upstream_port, gw->num_tenants());
  // Bursts of connections leave freed buffers in the I/O threads' malloc arenas.
  sluice::PeriodicHeapRelease heap_release(std::chrono::seconds(10));
  std::string keys_seen = ReadAll(keys);
  for (;;) {
    int sig = 0;
    if (keys_poll_s > 0) {
      timespec wait{static_cast<time_t>(keys_poll_s),
                    static_cast<long>((keys_poll_s - static_cast<time_t>(keys_poll_s)) * 1e9)};
      sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig < 0) {  // timed out: has the file changed?
        std::string now = ReadAll(keys);
        if (!now.empty() && now != keys_seen) {
          keys_seen = std::move(now);
          Reload(gw, "changed on disk");
        }
        continue;
      }
    } else {
      sigwait(&signals, &sig);
    }
    if (sig == SIGHUP) {
      keys_seen = ReadAll(keys);
      Reload(gw, "SIGHUP");
      continue;
    }
    spdlog::info("signal {}: finishing {} requests in flight", sig, gw->in_flight());
    api.StopAccepting();
    for (int i = 0; i < 300 && gw->in_flight() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // The last answers' final writes were queued just before they stopped counting as in
    // flight: a moment for the I/O threads to send them.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    break;
  }
  api.Stop();
  admin.Stop();
  // The upstream calls still open hold client connections of the two servers: they go
  // first, while the servers' I/O contexts that those connections belong to still exist.
  gateway->reset();
  return 0;
}
