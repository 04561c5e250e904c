// The NCCL communicator on the GPUs of this machine: with one GPU, a one-rank group's
// collectives through NCCL leave fp32 and bf16 buffers as a single rank must (and
// capture into a CUDA graph); with two or more, sums and gathers across ranks in fp32
// and bf16; an abort ends the group. Cases that need more GPUs than the machine has
// skip with the count. Exits 77 (ctest SKIP) without a GPU or without NCCL in the build.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <thread>
#include <vector>

#include "engine/parallel/nccl_communicator.h"
#include "gtest/gtest.h"
#include "tests/common/cuda_device.h"

namespace sluice {
namespace {

int GpuCount() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

template <class T>
T* Upload(const std::vector<T>& h) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, h.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

template <class T>
std::vector<T> Download(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST(NcclCommunicatorTest, OneRankThroughNcclIsTheIdentity) {
  auto comms = MakeNcclCommunicators({0});
  ASSERT_TRUE(comms.ok()) << comms.status();
  Communicator& c = *(*comms)[0];
  EXPECT_EQ(c.size(), 1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const std::vector<float> x = {1.5f, -2.0f, 3.25f, 1e-8f};
  float* dx = Upload(x);
  float* dy = Upload(std::vector<float>(4, 0.0f));
  ASSERT_TRUE(c.AllReduceSum(dx, 4, CommDtype::kFloat32, stream).ok());
  ASSERT_TRUE(c.AllGather(dx, dy, 4, CommDtype::kFloat32, stream).ok());
  ASSERT_TRUE(c.Broadcast(dx, 4 * sizeof(float), 0, stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(Download(dx, 4), x);
  EXPECT_EQ(Download(dy, 4), x);
  // bf16, as the runner's activations, and inside a captured graph.
  std::vector<__nv_bfloat16> b = {__float2bfloat16(0.5f), __float2bfloat16(-7.0f)};
  __nv_bfloat16* db = Upload(b);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_TRUE(c.AllReduceSum(db, 2, CommDtype::kBfloat16, stream).ok());
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const auto got = Download(db, 2);
  EXPECT_EQ(__bfloat162float(got[0]), 0.5f);
  EXPECT_EQ(__bfloat162float(got[1]), -7.0f);
  EXPECT_TRUE(c.Barrier().ok());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(db);
  cudaStreamDestroy(stream);
}

TEST(NcclCommunicatorTest, RanksSumAndGatherAcrossGpus) {
  const int n = GpuCount();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, this machine has " << n;
  std::vector<int> devices;
  for (int d = 0; d < n; ++d) devices.push_back(d);
  auto comms = MakeNcclCommunicators(devices);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<std::vector<float>> sums(n), gathered(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      cudaSetDevice(r);
      cudaStream_t stream;
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      float* d = Upload(std::vector<float>{float(r + 1), float(10 * r)});
      float* all = Upload(std::vector<float>(2 * n, 0.0f));
      EXPECT_TRUE((*comms)[r]->AllGather(d, all, 2, CommDtype::kFloat32, stream).ok());
      EXPECT_TRUE((*comms)[r]->AllReduceSum(d, 2, CommDtype::kFloat32, stream).ok());
      cudaStreamSynchronize(stream);
      sums[r] = Download(d, 2);
      gathered[r] = Download(all, 2 * n);
      cudaFree(d);
      cudaFree(all);
      cudaStreamDestroy(stream);
    });
  }
  for (auto& t : threads) t.join();
  float want0 = 0, want1 = 0;
  std::vector<float> want_all;
  for (int r = 0; r < n; ++r) {
    want0 += r + 1;
    want1 += 10 * r;
    want_all.push_back(r + 1);
    want_all.push_back(10 * r);
  }
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(sums[r], (std::vector<float>{want0, want1})) << "rank " << r;
    EXPECT_EQ(gathered[r], want_all) << "rank " << r;
  }
}

TEST(NcclCommunicatorTest, AbortEndsTheGroup) {
  auto comms = MakeNcclCommunicators({0});
  ASSERT_TRUE(comms.ok()) << comms.status();
  Communicator& c = *(*comms)[0];
  EXPECT_TRUE(c.status().ok());
  c.Abort(absl::InternalError("rank 0 lost its device"));
  EXPECT_EQ(c.status().message(), "rank 0 lost its device");
  EXPECT_FALSE(c.Barrier().ok());
}

TEST(NcclCommunicatorTest, MoreRanksThanGpusIsRefused) {
  const int n = GpuCount();
  std::vector<int> devices;
  for (int d = 0; d <= n; ++d) devices.push_back(d);
  auto comms = MakeNcclCommunicators(devices);
  ASSERT_FALSE(comms.ok());
  EXPECT_NE(comms.status().message().find("GPU(s)"), std::string::npos) << comms.status();
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  if (sluice::testing::NoCudaDevice()) return 77;
  if (!sluice::NcclBuilt()) {
    std::printf("SKIP: this build has no NCCL\n");
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
