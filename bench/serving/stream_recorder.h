// Turns the bytes of an OpenAI-style SSE stream into a RequestResult. Pure: the caller
// passes the arrival time of each piece, so tests drive it without sockets or clocks.
#ifndef SLUICE_BENCH_SERVING_STREAM_RECORDER_H_
#define SLUICE_BENCH_SERVING_STREAM_RECORDER_H_

#include <functional>
#include <string>
#include <string_view>

#include "bench/serving/metrics.h"

namespace sluice::bench {

// Splits a byte stream into server-sent events (WHATWG rules: lines end in \n, \r\n
// or \r; `data:` lines of one event are joined by \n; an empty line ends the event;
// lines starting with ':' are comments; other fields are ignored).
class SseParser {
 public:
  using EventFn = std::function<void(std::string_view data)>;
  explicit SseParser(EventFn on_event) : on_event_(std::move(on_event)) {}

  // Feeds the next bytes; calls on_event for every event they complete.
  void Feed(std::string_view bytes);

 private:
  void Line(std::string_view line);

  EventFn on_event_;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

// Records one streamed completion (or chat completion), vllm's way: every event whose
// JSON has a non-empty `choices` array is a chunk; the first chunk's time is the TTFT,
// each later chunk adds a gap to the ITL list, the last chunk's time is the E2E
// latency; `usage` (stream_options.include_usage) gives the token counts.
class StreamRecorder {
 public:
  // Handles one event's data received `t_s` seconds after the request began.
  // REQUIRES: t_s is non-decreasing across calls.
  void OnEvent(std::string_view data, double t_s);

  // True once `data: [DONE]` arrived.
  bool done() const { return done_; }
  // The first error seen in the stream (an `error` object or unparsable JSON), or "".
  const std::string& error() const { return error_; }

  // The measurements; `transport_error` ("" if none) marks the request failed.
  // Without usage, output_tokens is the number of chunks.
  RequestResult Finish(const std::string& transport_error) const;

 private:
  int64_t num_chunks_ = 0;
  double first_s_ = 0, last_s_ = 0;
  std::vector<double> itl_s_;
  int64_t prompt_tokens_ = -1, completion_tokens_ = -1, cached_tokens_ = 0;
  bool done_ = false;
  std::string error_;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_STREAM_RECORDER_H_
