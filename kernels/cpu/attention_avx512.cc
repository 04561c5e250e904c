// AttendTile for AVX-512F (compiled with -mavx512f -mfma; called only where the CPU has it).
#include <immintrin.h>
#include <math.h>

#include "attention_tile.h"

namespace sluice::kernels::cpu {
namespace {

struct Vec {
  static float Dot(const float* a, const float* b, int d) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
    for (int i = 16; i < d; i += 16) {
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
  }
  // exp(x) for x <= 0 (shifted scores): 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2],
  // p a degree-6 polynomial (Cephes' expf coefficients, relative error ~2e-7).
  static __m512 Exp(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
  }
  static float ExpShift(float* x, int n, float shift) {
    const __m512 s = _mm512_set1_ps(shift);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
      const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
      _mm512_mask_storeu_ps(x + i, m, e);
      sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
  }
  static void WeightedSum(float* out, int d, const float* w, const float* const* rows, int n,
                          float scale) {
    for (int c = 0; c < d; c += 64) {
      const int vecs = d - c >= 64 ? 4 : (d - c) / 16;
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
      for (int i = 0; i < n; ++i) {
        const __m512 wi = _mm512_set1_ps(w[i]);
        const float* row = rows[i] + c;
        for (int v = 0; v < vecs; ++v) {
          acc[v] = _mm512_fmadd_ps(wi, _mm512_loadu_ps(row + 16 * v), acc[v]);
        }
      }
      const __m512 sv = _mm512_set1_ps(scale);
      for (int v = 0; v < vecs; ++v) _mm512_storeu_ps(out + c + 16 * v, _mm512_mul_ps(acc[v], sv));
    }
  }
};

}  // namespace

#include "attention_tile.inc"

void AttendTileAvx512(const TileArgs& t) { AttendTileImpl(t); }

}  // namespace sluice::kernels::cpu
