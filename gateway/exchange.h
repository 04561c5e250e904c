// One request relayed by the gateway: what its upstream callbacks share, and the quota it
// holds until it settles. Internal to gateway/.
#pragma once

#include <memory>
#include <string>

#include "gateway/gateway.h"
#include "gateway/sse_filter.h"
#include "nlohmann/json.hpp"

namespace sluice::gateway {

// OpenAI's error object: {"error": {message, type, param (null when empty), code}}.
std::string ErrorBody(const std::string& message, const std::string& type,
                      const nlohmann::json& code, const std::string& param = "");

struct Gateway::Exchange {
  std::shared_ptr<http::ResponseWriter> writer;
  Tenant tenant;
  Cost cost;                    // what Acquire took
  int64_t charged = 0;          // tokens taken from the bucket so far (reservation included)
  int64_t prompt_estimate = 0;  // charged when the answer reports no usage
  bool client_include_usage = false;
  bool client_continuous_usage = false;
  bool sse = false;
  int status = 0;  // the upstream's; 0 until its headers come
  std::string content_type;
  http::Headers headers;
  std::string body;
  std::unique_ptr<SseFilter> filter;
};

}  // namespace sluice::gateway
