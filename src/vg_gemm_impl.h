/*
 * vg_gemm_impl.h -- one instance of the narrow-layer matrix product (see vg_gemm.h), included
 * once per (instruction set, type).  The includer defines:
 *   T, VT (vector type), VW (lanes), MRMAX (rows of the largest register tile), GK(name),
 *   ATTR (the target attribute), MASK (mask type), MASK_N(n) (first n lanes), and the
 *   operations VZERO(), VLOAD(p), VLOADM(p, m), VSTORE(p, v), VSTOREM(p, v, m), VBCAST(p),
 *   VADD(a, b), VFMA(a, b, c) = a * b + c rounded once.
 * All but MRMAX and ATTR (shared by an instruction set's two types) are undefined at the end.
 */

/* C[MR x (NV * VW)] = A[MR x K] B[K x NV*VW] (+ C when accum) for one register tile.
 * A(r, p) = A[r rs + p cs]; B row-major (ldb); the tile's last vector is masked by m when
 * MASKED.  MR, NV and MASKED are constants at every call, so the loops unroll and the
 * accumulators live in registers.  With accum, C's old value is added once, after the sum
 * (so the result is C + (A B), each rounded once: what adding a separate product gives). */
static inline __attribute__((always_inline)) ATTR
void GK(tile)(const int MR, const int NV, const int MASKED, long K, const T *restrict A,
              long rs, long cs, const T *restrict B, long ldb, T *restrict C, long ldc, MASK m,
              int accum)
{
    VT acc[MRMAX][2];
    for (int r = 0; r < MR; r++) {
        acc[r][0] = VZERO();
        acc[r][1] = VZERO();
    }
    for (long p = 0; p < K; p++) {
        const T *b = B + p * ldb;
        const T *a = A + p * cs;
        VT b0, b1 = VZERO();
        if (NV == 1) {
            b0 = MASKED ? VLOADM(b, m) : VLOAD(b);
        } else {
            b0 = VLOAD(b);
            b1 = MASKED ? VLOADM(b + VW, m) : VLOAD(b + VW);
        }
        for (int r = 0; r < MR; r++) {
            VT ar = VBCAST(a + r * rs);
            acc[r][0] = VFMA(ar, b0, acc[r][0]);
            if (NV == 2)
                acc[r][1] = VFMA(ar, b1, acc[r][1]);
        }
    }
    if (accum) {
        for (int r = 0; r < MR; r++) {
            const T *c = C + r * ldc;
            if (NV == 1) {
                acc[r][0] = VADD(acc[r][0], MASKED ? VLOADM(c, m) : VLOAD(c));
            } else {
                acc[r][0] = VADD(acc[r][0], VLOAD(c));
                acc[r][1] = VADD(acc[r][1], MASKED ? VLOADM(c + VW, m) : VLOAD(c + VW));
            }
        }
    }
    for (int r = 0; r < MR; r++) {
        T *c = C + r * ldc;
        if (NV == 1) {
            if (MASKED) VSTOREM(c, acc[r][0], m); else VSTORE(c, acc[r][0]);
        } else {
            VSTORE(c, acc[r][0]);
            if (MASKED) VSTOREM(c + VW, acc[r][1], m); else VSTORE(c + VW, acc[r][1]);
        }
    }
}

/* Every row of one column panel (NV vectors wide), in tiles of MRMAX, 4, 2 and 1 rows. */
static inline __attribute__((always_inline)) ATTR
void GK(panel)(const int NV, const int MASKED, long M, long K, const T *restrict A, long rs,
               long cs, const T *restrict B, long ldb, T *restrict C, long ldc, MASK m,
               int accum)
{
    long i = 0;
    for (; i + MRMAX <= M; i += MRMAX)
        GK(tile)(MRMAX, NV, MASKED, K, A + i * rs, rs, cs, B, ldb, C + i * ldc, ldc, m, accum);
    for (; i + 4 <= M; i += 4)
        GK(tile)(4, NV, MASKED, K, A + i * rs, rs, cs, B, ldb, C + i * ldc, ldc, m, accum);
    for (; i + 2 <= M; i += 2)
        GK(tile)(2, NV, MASKED, K, A + i * rs, rs, cs, B, ldb, C + i * ldc, ldc, m, accum);
    for (; i < M; i++)
        GK(tile)(1, NV, MASKED, K, A + i * rs, rs, cs, B, ldb, C + i * ldc, ldc, m, accum);
}

/* Rows of B a packed panel holds: 32 KB of stack, whatever the type and vector width. */
#define GK_KC (32768 / (2 * VW * (long)sizeof(T)))

/* C (M x N, row-major, ldc) = A B (+ C when accum), A(i, p) = A[i rs + p cs], B (K x N, row-major, ldb).
 * Column panels of two vectors outermost, so that a panel of B (K x 2 VW) stays in the L1
 * cache while every row tile passes over it.  A full panel is first copied into a contiguous
 * buffer when more than MRMAX rows will read it (and K <= GK_KC): in place, its K rows lie
 * ldb apart, and with a power-of-two row length (256 floats: 1 KB) they fall into a handful of
 * the L1 cache's sets and evict each other before the next tile comes back to them.  The copy
 * changes where B is read from, not the arithmetic: the results are the same bits. */
static ATTR __attribute__((noinline))
void GK(gemm)(long M, long N, long K, const T *restrict A, long rs, long cs,
              const T *restrict B, long ldb, T *restrict C, long ldc, int accum)
{
    long j = 0, rem;
    MASK full = MASK_N(VW);
    T pack[GK_KC * 2 * VW] __attribute__((aligned(64)));
    const int packed = M > MRMAX && K <= GK_KC;
    for (; j + 2 * VW <= N; j += 2 * VW) {
        if (packed) {
            for (long p = 0; p < K; p++) {
                VSTORE(pack + p * 2 * VW, VLOAD(B + p * ldb + j));
                VSTORE(pack + p * 2 * VW + VW, VLOAD(B + p * ldb + j + VW));
            }
            GK(panel)(2, 0, M, K, A, rs, cs, pack, 2 * VW, C + j, ldc, full, accum);
        } else {
            GK(panel)(2, 0, M, K, A, rs, cs, B + j, ldb, C + j, ldc, full, accum);
        }
    }
    rem = N - j;
    if (rem > VW)
        GK(panel)(2, 1, M, K, A, rs, cs, B + j, ldb, C + j, ldc, MASK_N(rem - VW), accum);
    else if (rem == VW)
        GK(panel)(1, 0, M, K, A, rs, cs, B + j, ldb, C + j, ldc, full, accum);
    else if (rem > 0)
        GK(panel)(1, 1, M, K, A, rs, cs, B + j, ldb, C + j, ldc, MASK_N(rem), accum);
}

#undef GK_KC
#undef T
#undef VT
#undef VW
#undef GK
#undef MASK
#undef MASK_N
#undef VZERO
#undef VLOAD
#undef VLOADM
#undef VSTORE
#undef VSTOREM
#undef VBCAST
#undef VFMA
#undef VADD
