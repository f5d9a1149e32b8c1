/*
 * vg_gemm.h -- vgcore's own matrix product for narrow layers.
 *
 * A BLAS call on a 64 x 64 x 64 product spends much of its time around the arithmetic: the
 * call, the checks, packing both operands into its own layout.  Narrow layers are made of such
 * products, three per layer and step.  This kernel multiplies the operands where they are:
 * register tiles of MRMAX rows by two vectors of columns, a row of B loaded once per tile
 * and step of the sum, one element of A broadcast per row, one fused multiply-add per vector.
 *
 *   C (M x N, row-major, ldc) = A B (+ C: accum),  A(i, p) = A[i rs + p cs]  (row-major A: rs = lda,
 *   cs = 1; a transposed view: rs = 1, cs = lda),  B (K x N, row-major, ldb).
 *
 * Compiled for AVX-512 and for AVX2 with FMA; the version is picked when the module loads
 * (vg_gemm_isa, from what the CPU supports) and can be lowered for tests.  On a CPU with
 * neither, vg_gemm_isa is VG_GEMM_NONE and the callers use BLAS.  Each element of C is summed
 * in the order p = 0 .. K-1 with one rounding per step in both versions, so AVX-512 and AVX2
 * give bit-identical results; they differ from BLAS's order within rounding.
 * Knows nothing of Python; no threads (the layers it serves are too small to split).
 */
#ifndef VG_GEMM_H
#define VG_GEMM_H

enum { VG_GEMM_NONE = 0, VG_GEMM_AVX2 = 1, VG_GEMM_AVX512 = 2 };

/* The largest product (multiply-adds; float64 counts twice) the callers give this kernel.
 * Measured on 2-core AVX-512 machines against OpenBLAS 0.3.30: as fast or faster up to here
 * (64^3: the same in forward and dW, 1.3x faster for dX; 128 x 256 x 256: 1.2x faster), while
 * products of wide layers need BLAS's cache blocking and, on a quiet machine, its threads. */
#define VG_GEMM_MAX_MNK 4194304.0

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define VG_GEMM_X86 1

/* ---- AVX-512, float ---- */
#define T float
#define VT __m512
#define VW 16
#define MRMAX 8
#define GK(name) vg_gemm_##name##_avx512_f32
#define ATTR __attribute__((target("avx512f,avx2,fma")))
#define MASK __mmask16
#define MASK_N(n) ((__mmask16)((n) >= 16 ? 0xFFFFu : ((1u << (n)) - 1u)))
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSTOREM(p, v, m) _mm512_mask_storeu_ps(p, m, v)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#include "vg_gemm_impl.h"

/* ---- AVX-512, double ---- */
#define T double
#define VT __m512d
#define VW 8
#define GK(name) vg_gemm_##name##_avx512_f64
#define MASK __mmask8
#define MASK_N(n) ((__mmask8)((n) >= 8 ? 0xFFu : ((1u << (n)) - 1u)))
#define VZERO() _mm512_setzero_pd()
#define VLOAD(p) _mm512_loadu_pd(p)
#define VLOADM(p, m) _mm512_maskz_loadu_pd(m, p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VSTOREM(p, v, m) _mm512_mask_storeu_pd(p, m, v)
#define VBCAST(p) _mm512_set1_pd(*(p))
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VADD(a, b) _mm512_add_pd(a, b)
#include "vg_gemm_impl.h"
#undef MRMAX
#undef ATTR

/* ---- AVX2 + FMA, float ---- */
#define T float
#define VT __m256
#define VW 8
#define MRMAX 6
#define GK(name) vg_gemm_##name##_avx2_f32
#define ATTR __attribute__((target("avx2,fma")))
#define MASK __m256i
#define MASK_N(n) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), \
                                     _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSTOREM(p, v, m) _mm256_maskstore_ps(p, m, v)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#include "vg_gemm_impl.h"

/* ---- AVX2 + FMA, double ---- */
#define T double
#define VT __m256d
#define VW 4
#define GK(name) vg_gemm_##name##_avx2_f64
#define MASK __m256i
#define MASK_N(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(n)), \
                                     _mm256_setr_epi64x(0, 1, 2, 3))
#define VZERO() _mm256_setzero_pd()
#define VLOAD(p) _mm256_loadu_pd(p)
#define VLOADM(p, m) _mm256_maskload_pd(p, m)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VSTOREM(p, v, m) _mm256_maskstore_pd(p, m, v)
#define VBCAST(p) _mm256_broadcast_sd(p)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VADD(a, b) _mm256_add_pd(a, b)
#include "vg_gemm_impl.h"
#undef MRMAX
#undef ATTR

static inline int vg_gemm_best_isa(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return VG_GEMM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return VG_GEMM_AVX2;
    return VG_GEMM_NONE;
}
#else
#define VG_GEMM_X86 0
static inline int vg_gemm_best_isa(void) { return VG_GEMM_NONE; }
#endif

/* The version in use (set at load to vg_gemm_best_isa(); tests lower it). */
static int vg_gemm_isa = VG_GEMM_NONE;

static inline void vg_gemm_f32(long M, long N, long K, const float *A, long rs, long cs,
                               const float *B, long ldb, float *C, long ldc, int accum)
{
#if VG_GEMM_X86
    if (vg_gemm_isa == VG_GEMM_AVX512)
        vg_gemm_gemm_avx512_f32(M, N, K, A, rs, cs, B, ldb, C, ldc, accum);
    else
        vg_gemm_gemm_avx2_f32(M, N, K, A, rs, cs, B, ldb, C, ldc, accum);
#else
    (void)M; (void)N; (void)K; (void)A; (void)rs; (void)cs; (void)B; (void)ldb; (void)C;
    (void)ldc; (void)accum;
#endif
}

static inline void vg_gemm_f64(long M, long N, long K, const double *A, long rs, long cs,
                               const double *B, long ldb, double *C, long ldc, int accum)
{
#if VG_GEMM_X86
    if (vg_gemm_isa == VG_GEMM_AVX512)
        vg_gemm_gemm_avx512_f64(M, N, K, A, rs, cs, B, ldb, C, ldc, accum);
    else
        vg_gemm_gemm_avx2_f64(M, N, K, A, rs, cs, B, ldb, C, ldc, accum);
#else
    (void)M; (void)N; (void)K; (void)A; (void)rs; (void)cs; (void)B; (void)ldb; (void)C;
    (void)ldc; (void)accum;
#endif
}

/* dst (cols x rows, row-major) = src^T, src (rows x cols, row-major): for the product with
 * a transposed weight matrix (dX = delta W^T), whose B operand must be row-major.  Blocks of
 * 8 x 8 (float, AVX2: eight loads, 24 shuffles, eight stores) or 4 x 4 (double); the edges
 * element by element. */
#if VG_GEMM_X86
__attribute__((target("avx2"))) static inline void
vg_tr8x8_f32(const float *s, long lds, float *d, long ldd)
{
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds),
           r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds),
           r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds),
           r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
           t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
           t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

__attribute__((target("avx2"))) static inline void
vg_tr4x4_f64(const double *s, long lds, double *d, long ldd)
{
    __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + lds),
            r2 = _mm256_loadu_pd(s + 2 * lds), r3 = _mm256_loadu_pd(s + 3 * lds);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1),
            t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(d + ldd, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(d + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(d + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#define VG_TR_BLOCK_F32(s, lds, d, ldd) vg_tr8x8_f32(s, lds, d, ldd)
#define VG_TR_BLOCK_F64(s, lds, d, ldd) vg_tr4x4_f64(s, lds, d, ldd)
#endif

/* Bands of 2 BS source rows where they fit (else BS): the blocks of a band side by side fill
 * 2 BS consecutive elements of each destination row (64 bytes in float: a whole cache line
 * when the row starts on one, as a 256-float row of an aligned buffer does), instead of
 * leaving half-written lines to be completed a band later. */
#define VG_TRANSPOSE(SFX, T, BS, ATTRS)                                              \
ATTRS static void vg_transpose_##SFX(long rows, long cols, const T *restrict src,     \
                                     T *restrict dst)                               \
{                                                                                   \
    long i0 = 0, j0, h;                                                             \
    for (; i0 + BS <= rows; i0 += h) {                                              \
        h = i0 + 2 * BS <= rows ? 2 * BS : BS;                                      \
        for (j0 = 0; j0 + BS <= cols; j0 += BS)                                     \
            for (long b = 0; b < h; b += BS)                                        \
                VG_TR_BLOCK_##SFX(src + (i0 + b) * cols + j0, cols,                 \
                                  dst + j0 * rows + i0 + b, rows);                  \
        for (long i = i0; i < i0 + h; i++)                                          \
            for (long j = j0; j < cols; j++)                                        \
                dst[j * rows + i] = src[i * cols + j];                              \
    }                                                                               \
    for (long i = i0; i < rows; i++)                                                \
        for (long j = 0; j < cols; j++)                                             \
            dst[j * rows + i] = src[i * cols + j];                                  \
}
#if VG_GEMM_X86
VG_TRANSPOSE(F32, float, 8, __attribute__((target("avx2"))))
VG_TRANSPOSE(F64, double, 4, __attribute__((target("avx2"))))
#endif
#undef VG_TRANSPOSE

#endif /* VG_GEMM_H */
