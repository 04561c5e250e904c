// AttendTile for AVX2 + FMA (compiled with -mavx2 -mfma; called only where the CPU has them).
#include <immintrin.h>
#include <math.h>

#include "attention_tile.h"

namespace sluice::kernels::cpu {
namespace {

struct Vec {
  static float Dot(const float* a, const float* b, int d) {
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b));
    for (int i = 8; i < d; i += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    }
    return Sum(acc);
  }
  // exp(x) for x <= 0, as the AVX-512 one; 2^n built in the exponent bits.
  static __m256 Exp(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static float ExpShift(float* x, int n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256 sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
      _mm256_storeu_ps(x + i, e);
      sum = _mm256_add_ps(sum, e);
    }
    float total = Sum(sum);
    for (; i < n; ++i) {
      x[i] = expf(x[i] - shift);
      total += x[i];
    }
    return total;
  }
  static float Sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void WeightedSum(float* out, int d, const float* w, const float* const* rows, int n,
                          float scale) {
    for (int c = 0; c < d; c += 32) {
      const int vecs = d - c >= 32 ? 4 : (d - c) / 8;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int i = 0; i < n; ++i) {
        const __m256 wi = _mm256_set1_ps(w[i]);
        const float* row = rows[i] + c;
        for (int v = 0; v < vecs; ++v) {
          acc[v] = _mm256_fmadd_ps(wi, _mm256_loadu_ps(row + 8 * v), acc[v]);
        }
      }
      const __m256 sv = _mm256_set1_ps(scale);
      for (int v = 0; v < vecs; ++v) _mm256_storeu_ps(out + c + 8 * v, _mm256_mul_ps(acc[v], sv));
    }
  }
};

}  // namespace

#include "attention_tile.inc"

void AttendTileAvx2(const TileArgs& t) { AttendTileImpl(t); }

}  // namespace sluice::kernels::cpu
