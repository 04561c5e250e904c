// cudaStream_t without including the CUDA headers, so headers that mention a stream
// compile on machines without the toolkit. The typedef matches the runtime's own.
#pragma once

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
