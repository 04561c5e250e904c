// SSE framing and vllm's chunk rules: TTFT, ITL, E2E from event arrival times, usage.
#include "bench/serving/stream_recorder.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

std::vector<std::string> Split(const std::string& stream, size_t piece) {
  std::vector<std::string> events;
  SseParser parser([&](std::string_view d) { events.emplace_back(d); });
  for (size_t i = 0; i < stream.size(); i += piece) parser.Feed(stream.substr(i, piece));
  return events;
}

TEST(SseParserTest, EventsSurviveAnySplitAndLineEnding) {
  const std::string stream =
      ": ping\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\nevent: x\ndata: l1\ndata: l2\r\rdata: "
      "[DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "l1\nl2", "[DONE]"};
  for (size_t piece : {1, 2, 3, 7, 1000}) {
    EXPECT_EQ(Split(stream, piece), want) << "piece " << piece;
  }
}

TEST(SseParserTest, IncompleteEventIsHeld) { EXPECT_TRUE(Split("data: {\"a\":1}\n", 5).empty()); }

TEST(StreamRecorderTest, TimesChunksWithChoicesOnly) {
  StreamRecorder rec;
  rec.OnEvent(R"({"choices":[{"text":"a"}]})", 0.030);
  rec.OnEvent(R"({"choices":[{"text":""}]})", 0.035);  // empty text still counts (vllm)
  rec.OnEvent(R"({"choices":[{"delta":{"content":"b"}}],"usage":null})", 0.045);
  rec.OnEvent(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,)"
              R"("prompt_tokens_details":{"cached_tokens":8}}})",
              0.050);
  rec.OnEvent("[DONE]", 0.051);
  EXPECT_TRUE(rec.done());
  const RequestResult r = rec.Finish("");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.030);
  EXPECT_DOUBLE_EQ(r.e2e_s, 0.045);  // the usage-only event does not move E2E
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(r.itl_s[0], 0.005, 1e-12);
  EXPECT_NEAR(r.itl_s[1], 0.010, 1e-12);
  EXPECT_EQ(r.prompt_tokens, 12);
  EXPECT_EQ(r.output_tokens, 3);
  EXPECT_EQ(r.cached_tokens, 8);
}

TEST(StreamRecorderTest, WithoutUsageCountsChunks) {
  StreamRecorder rec;
  rec.OnEvent(R"({"choices":[{"text":"a"}]})", 0.1);
  rec.OnEvent(R"({"choices":[{"text":"b"}]})", 0.2);
  const RequestResult r = rec.Finish("");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.output_tokens, 2);
  EXPECT_EQ(r.prompt_tokens, -1);
}

TEST(StreamRecorderTest, FailuresAreReported) {
  StreamRecorder empty;
  EXPECT_FALSE(empty.Finish("").ok);
  StreamRecorder error_event;
  error_event.OnEvent(R"({"choices":[{"text":"a"}]})", 0.1);
  error_event.OnEvent(R"({"error":{"message":"boom"}})", 0.2);
  const RequestResult r = error_event.Finish("");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("boom"), std::string::npos);
  StreamRecorder garbage;
  garbage.OnEvent("not json", 0.1);
  EXPECT_FALSE(garbage.Finish("").ok);
  StreamRecorder transport;
  transport.OnEvent(R"({"choices":[{"text":"a"}]})", 0.1);
  const RequestResult t = transport.Finish("read body: timeout");
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.error, "read body: timeout");
}

}  // namespace
}  // namespace sluice::bench
