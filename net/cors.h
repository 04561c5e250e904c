// Cross-origin resource sharing for browser clients: which origins may call the API, the
// headers that tell the browser so, and the answer to a preflight (OPTIONS) request.
// With no origins configured nothing is added and preflights are answered without
// permission, so browsers refuse cross-origin calls (the default).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "net/http_server.h"

namespace sluice::http {

class CorsPolicy {
 public:
  CorsPolicy() = default;
  // Comma-separated origins ("https://app.example,http://localhost:3000") or "*" for any;
  // empty for none. Each must be scheme://host[:port], no path.
  static absl::StatusOr<CorsPolicy> Parse(absl::string_view spec);

  bool enabled() const { return any_ || !origins_.empty(); }
  // The Access-Control-Allow-Origin value for a request from `origin`; nullopt when the
  // origin may not call (or the request names none).
  std::optional<std::string> AllowOrigin(absl::string_view origin) const;
  // What an answer to a request from `origin` carries (nothing when not allowed).
  Headers ResponseHeaders(absl::string_view origin) const;
  // A preflight's answer headers: `allow` lists the path's methods ("GET, POST").
  Headers PreflightHeaders(const Request& req, absl::string_view allow) const;

 private:
  bool any_ = false;
  std::vector<std::string> origins_;
};

// A writer that adds `headers` to the answer `inner` sends (whole or streamed).
std::shared_ptr<ResponseWriter> WithHeaders(std::shared_ptr<ResponseWriter> inner, Headers headers);

}  // namespace sluice::http
