/*
 * vg_derive.h -- the gradient-flow fields, derived from the measurement rows the passes wrote.
 *
 * Plain C99, no Python.  A measurement row holds a layer's sums (VG_ST_*, vg_kernels.h); the
 * fields users read (delta_rms, grad_norm, gain, ...; ids VG_FLD_* in vg_contract.h) are a
 * few operations on them.  NumPy's vgcore.flow.derive is their definition; this computes the
 * same numbers bit for bit (the same IEEE operations in the same order: sqrt and division are
 * correctly rounded in both; tests/test_derive.py), in one call for every field of a step,
 * where NumPy takes a few microseconds per field and tens right after a step, when its code
 * has left the caches.
 */
#ifndef VG_DERIVE_H
#define VG_DERIVE_H

#include <math.h>
#include <stdint.h>
#include "vg_kernels.h"

/* NumPy's maximum(x, 0.0): x when x > 0 or x is NaN (NaN propagates), else 0 (+0 for -0) */
static inline double vg_max0(double x) { return (x > 0.0 || x != x) ? x : 0.0; }

/* o[l] = EXPR for every layer l, sl being layer l's row (then leave the switch) */
#define VG_LAYERS(EXPR)                                                     \
    for (long l = 0; l < L; l++) {                                          \
        const double *sl = s + l * VG_N_STATS;                              \
        o[l] = (EXPR);                                                      \
    }                                                                       \
    break;

/* Field `field` of `rows` steps of an L-layer network: st (rows, L, VG_N_STATS) and psms
 * (rows, L) C-contiguous; widths (L); the step's batch size and whether an optimiser step
 * followed its backward (update_to_weight) at batch[r * bstep] and stepped[r * sstep].
 * Writes out (rows, L) for a per-layer field (id < VG_N_LAYER_FIELDS), out (rows) for a
 * per-step scalar; the non-finite layers come out 1-based, 0 for none.  Returns 0, or -1 for
 * an id without its formula here (an id added to vg_contract.h only; out is then partly
 * written: the caller raises). */
VG_CLONES int vg_derive(int field, long rows, long L, const double *st, const double *psms,
                        const double *widths, const int64_t *batch, long bstep,
                        const int64_t *stepped, long sstep, double *out)
{
    if (field < 0 || field >= VG_N_FIELDS)
        return -1;
    for (long r = 0; r < rows; r++) {
        const double *s = st + r * L * VG_N_STATS;
        const double *ps = psms + r * L;
        const double B = (double)batch[r * bstep];
        const int step = stepped[r * sstep] != 0;
        if (field >= VG_N_LAYER_FIELDS) {
            double v = 0.0;
            if (field == VG_FLD_GRAD_RATIO && L > 0)
                v = sqrt(s[VG_ST_DW2]) / sqrt(s[(L - 1) * VG_N_STATS + VG_ST_DW2]);
            else if (field == VG_FLD_DELTA_RATIO && L > 0)
                v = sqrt(s[VG_ST_SUM_D2]) / sqrt(s[(L - 1) * VG_N_STATS + VG_ST_SUM_D2]);
            else if (field == VG_FLD_NONFINITE_FORWARD_LAYER) {
                for (long l = 0; l < L; l++)
                    if (!isfinite(s[l * VG_N_STATS + VG_ST_SUM_H2])) {
                        v = (double)(l + 1);
                        break;
                    }
            } else if (field == VG_FLD_NONFINITE_BACKWARD_LAYER) {
                for (long l = L - 1; l >= 0; l--) {
                    const double *sl = s + l * VG_N_STATS;
                    if (!(isfinite(sl[VG_ST_SUM_D2]) && isfinite(sl[VG_ST_DW2])
                          && isfinite(sl[VG_ST_DB2]))) { v = (double)(l + 1); break; }
                }
            } else if (field != VG_FLD_GRAD_RATIO && field != VG_FLD_DELTA_RATIO) {
                return -1;      /* a scalar without its formula here */
            }
            out[r] = v;
            continue;
        }
        double *o = out + r * L;
        switch (field) {    /* a loop per field, so that each vectorises */
        case VG_FLD_DELTA_RMS: VG_LAYERS(sqrt(sl[VG_ST_SUM_D2] / (B * widths[l])))
        case VG_FLD_DELTA_NORM: VG_LAYERS(sqrt(sl[VG_ST_SUM_D2]))
        case VG_FLD_GRAD_NORM: VG_LAYERS(sqrt(sl[VG_ST_DW2]))
        case VG_FLD_BIAS_GRAD_NORM: VG_LAYERS(sqrt(sl[VG_ST_DB2]))
        case VG_FLD_WEIGHT_NORM: VG_LAYERS(sqrt(sl[VG_ST_W2]))
        case VG_FLD_BIAS_NORM: VG_LAYERS(sqrt(sl[VG_ST_B2]))
        case VG_FLD_GRAD_TO_WEIGHT: VG_LAYERS(sqrt(sl[VG_ST_DW2]) / sqrt(sl[VG_ST_W2]))
        case VG_FLD_UPDATE_TO_WEIGHT:
            if (step) { VG_LAYERS(sqrt(sl[VG_ST_UW2]) / sqrt(sl[VG_ST_W2])) }
            VG_LAYERS((double)NAN)
        case VG_FLD_PREACT_RMS: VG_LAYERS(sqrt(sl[VG_ST_SUM_H2] / (B * widths[l])))
        case VG_FLD_ACT_MEAN: VG_LAYERS(sl[VG_ST_SUM_A] / (B * widths[l]))
        case VG_FLD_ACT_STD:
            VG_LAYERS(sqrt(vg_max0(sl[VG_ST_SUM_A2] / (B * widths[l])
                                   - (sl[VG_ST_SUM_A] / (B * widths[l]))
                                     * (sl[VG_ST_SUM_A] / (B * widths[l])))))
        case VG_FLD_SATURATED_FRACTION: VG_LAYERS(sl[VG_ST_N_SAT] / (B * widths[l]))
        case VG_FLD_ZERO_DERIVATIVE_FRACTION: VG_LAYERS(sl[VG_ST_N_ZERO] / (B * widths[l]))
        case VG_FLD_DEAD_FRACTION: VG_LAYERS(sl[VG_ST_N_DEAD] / widths[l])
        case VG_FLD_GAIN:   /* the output layer has no layer above: NaN */
            for (long l = 0; l + 1 < L; l++) {
                const double *sl = s + l * VG_N_STATS;
                o[l] = sqrt(sl[VG_ST_SUM_D2]) / sqrt(sl[VG_N_STATS + VG_ST_SUM_D2]);
            }
            o[L - 1] = (double)NAN;
            break;
        case VG_FLD_GSNR: VG_LAYERS(sl[VG_ST_DW2] / vg_max0(ps[l] - sl[VG_ST_DW2]))
        case VG_FLD_UNDERFLOW_FRACTION: VG_LAYERS(sl[VG_ST_N_UNDERFLOW] / (B * widths[l]))
        default: return -1;     /* a field without its formula here */
        }
    }
    return 0;
}

#undef VG_LAYERS

#endif /* VG_DERIVE_H */
