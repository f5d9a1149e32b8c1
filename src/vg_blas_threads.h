/*
 * vg_blas_threads.h -- how vgcore's passes run the BLAS's threads: small products in one
 * thread, larger ones in one thread when that has been faster (a busy machine).
 *
 * OpenBLAS splits a product over its own thread pool once m*n*k passes 262,144.  For the
 * products of narrow layers (a 96-wide layer at batch 64 is 589,824) the split costs more than
 * it saves: measured on 2 cores, a 20-layer relu stack of width 96..192 at batch 32..128 runs
 * 1.15-1.4x slower with 2 BLAS threads than with 1.  Worse, OpenBLAS's threads are not
 * vgcore's: their MXCSR has no FTZ/DAZ, so a product whose results fall below the smallest
 * normal takes a microcode assist per value there (the 60-layer sigmoid stack of width 96 ran
 * 2.1x slower with 2 BLAS threads than with 1, against 1.3x for the same shapes under relu).
 *
 * So while a compiled pass multiplies matrices with at most `vg_blas_one_max` multiply-adds
 * (m*n*k), the BLAS runs them in one thread, the calling thread, which has vgcore's FTZ/DAZ.
 * Larger products get the BLAS's thread count back.  The count is process-wide in OpenBLAS,
 * so it is changed under a mutex with a count of the passes that asked for one thread: the
 * first sets it to 1 and remembers what it was, the last puts that back.  A thread that
 * switches goes back before its pass returns (vg_blas_release), so code outside vgcore finds
 * the count it set.  Another thread's product started meanwhile runs in one thread: slower,
 * and with most BLAS kernels no different (OpenBLAS splits the output, not the sums; where a
 * kernel still rounds differently, see vg_blas_hands_off below).
 *
 * Larger products also run in one thread when that has been faster for this network lately
 * (vg_blas_pass_begin / vg_blas_pass_end): on a shared machine a neighbour that takes a core
 * leaves one of OpenBLAS's threads waiting for the scheduler at the end of every product, and
 * a 2-thread step then takes 20x its quiet time at the 90th percentile, while one thread only
 * loses the second core.  Each network keeps, per pass direction, its time per multiply-add
 * in either mode (a moving average over the passes of the mode it runs, the mean of the last
 * two probes for the other), runs the faster one and tries the other every 32nd pass (every
 * 128th while the other was 1.5x slower or more: a probe costs that much), and once more 2
 * passes after a probe that beat the running mode without winning the switch, so it follows
 * the load both ways within about one probe period.  After a switch it tries the mode it left
 * sooner, 2, 4, 8 and 16 passes later: a switch that a burst of load caused (another
 * library's BLAS threads still spinning for ~0.1 s after their own work, say) is undone within
 * a few passes instead of holding a wide network on one thread for 32.  A probe is two passes
 * of the other mode, of which the second counts (see vg_choice_pick).  Results do not depend
 * on the mode (with the same proviso).
 *
 * Both rest on OpenBLAS splitting the output, not the sums.  Some of its kernels (Haswell's, on
 * an AMD EPYC) still give other bits at another thread count; the module probes that when a
 * library is chosen (blas_threads_change_bits, at import) and then leaves the count alone
 * (vg_blas_hands_off).  The
 * probe's operands hold no subnormals: a difference that only the calling thread's FTZ/DAZ
 * (which OpenBLAS's own threads lack) would make is not what it looks for; the kernels write
 * the products' operands flushed, so none reaches a product.
 *
 * Reaching the count needs OpenBLAS's openblas_set_num_threads in the library that computes
 * the products (vg_blas.h: NumPy's OpenBLAS or SciPy's).  vg_blas_bind finds it from the
 * address of that library's sgemm; with another BLAS (or no dladdr) nothing is bound and
 * products run as the BLAS decides.
 */
#ifndef VG_BLAS_THREADS_H
#define VG_BLAS_THREADS_H

#if defined(__linux__) || defined(__APPLE__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#define VG_HAVE_BLAS_BIND 1
#else
#define VG_HAVE_BLAS_BIND 0
#endif

#include <string.h>

#include "vg_blas.h"

/* The default limit for float32 products, in multiply-adds (m*n*k); float64 products count
 * twice.  Measured crossover on 2 cores (Intel Xeon, OpenBLAS 0.3.30 SkylakeX): 1 thread is
 * faster up to about 4 million, 2 threads from about 8 million. */
#define VG_BLAS_ONE_MAX_DEFAULT 4194304.0

typedef void (*vg_blas_set_fn)(int);
typedef int (*vg_blas_get_fn)(void);

/* A network's choice for one pass direction: moving averages of seconds per multiply-add
 * with the BLAS's own thread count (ewma[0]) and with one thread (ewma[1]); < 0 = not yet
 * measured. */
typedef struct {
    double ewma[2];
    double probe[2];    /* the mode's last sample taken as a probe, < 0 = none */
    long passes;        /* passes that had a product above the limit */
    long since;         /* passes since the other mode last ran */
    long gap;           /* passes between probes while confirming a switch (2, 4, 8, 16)
                         * or a faster probe (2), else VG_BLAS_PROBE_EVERY */
    int best;           /* 1: one thread has been faster */
    int warm;           /* 1: the last pass was a probe's warm-up: the next is the probe */
    int last;           /* the mode of the last pass */
    int confirm;        /* 1: the next probe confirms a faster one (then back to the period) */
} vg_blas_choice;

#define VG_BLAS_PROBE_EVERY 32
#define VG_BLAS_PROBE_RARE 128      /* when the other mode was 1.5x slower or more */
#define VG_BLAS_PROBE_FIRST 2       /* the first probe of the mode a switch left */
#define VG_BLAS_EWMA 0.25

static inline void vg_blas_choice_init(vg_blas_choice *c)
{
    c->ewma[0] = -1.0;
    c->ewma[1] = -1.0;
    c->probe[0] = -1.0;
    c->probe[1] = -1.0;
    c->passes = 0;
    c->since = 0;
    c->gap = VG_BLAS_PROBE_EVERY;
    c->best = 0;
    c->warm = 0;
    c->last = 0;
    c->confirm = 0;
}

static vg_blas_set_fn vg_blas_set = NULL;
static vg_blas_get_fn vg_blas_get = NULL;
static const char *vg_blas_symbol = "";
static double vg_blas_one_max = VG_BLAS_ONE_MAX_DEFAULT;
static int vg_blas_adapt = 1;           /* choose the mode of larger products by their speed */
/* Whether this BLAS gives other bits for the same product at another thread count (probed when
 * a library is chosen: OpenBLAS's Haswell sgemm/dgemm kernels do, its SkylakeX ones did not in
 * our tests).  Then, with vg_blas_reproducible (the default), vgcore leaves the BLAS's thread
 * count alone: a count changed by one pass (or by another thread's pass: the count is
 * process-wide) would change the results of the next, and a run would not repeat its bits at a
 * fixed thread count. */
static int vg_blas_bits_vary = 0;
static int vg_blas_reproducible = 1;

static inline int vg_blas_hands_off(void)
{
    return vg_blas_set == NULL || (vg_blas_bits_vary && vg_blas_reproducible);
}

static void vg_blas_lock(void);
static void vg_blas_unlock(void);

/* The two-mode chooser (also used by the batch chunks of _engine_chunks.pxi, whose modes are
 * two threads and one): the faster mode so far, the other one first while it is unmeasured,
 * then 2, 4, 8 and 16 passes after a switch, and then every 32nd pass (128th while it was 1.5x
 * slower or more), and 2 passes after a probe that beat the running mode without winning
 * the switch (its estimate also holds the probe before).  A probe is two passes in the other
 * mode, and only the second one counts:
 * the first wakes threads that slept while that mode did not run (Linux may wake a worker on
 * the calling thread's core) and brings the data into their caches, so a
 * probe of one pass measured a mode's cold start, not its speed (seen: a narrow network's two
 * threads probed at 1.3 ms against 0.75 ms warm, and kept on one thread at 1.2 ms).  For the
 * same reason the first pass back in the chosen mode after a probe is not learned from either.
 * Not covered: the very first pass of each mode (nothing to compare with yet; a cold first
 * sample of the other mode only brings its next probe), and passes of the other choosers of
 * the network (forward, backward, step) that ran in between on the same threads. */
static inline int vg_choice_pick(const vg_blas_choice *c)
{
    int mode = c->best;
    long every;
    if (c->ewma[1 - mode] < 0 || c->warm)
        return 1 - mode;
    if (c->gap < VG_BLAS_PROBE_EVERY)
        every = c->gap;
    else
        every = c->ewma[1 - mode] < 1.5 * c->ewma[mode] ? VG_BLAS_PROBE_EVERY
                                                          : VG_BLAS_PROBE_RARE;
    return c->since + 1 >= every ? 1 - mode : mode;
}

/* Learn from a pass that took `cost` (seconds per unit of work) in `mode`. */
static inline void vg_choice_learn(vg_blas_choice *c, int mode, double cost)
{
    int was = c->best;
    int changed = mode != c->last;
    c->last = mode;
    if (changed && c->ewma[mode] >= 0) {
        /* the first pass after the other mode ran: its cost is the change's (threads woken,
         * caches filled), not the mode's; not learned from.  In the other mode it is a
         * probe's warm-up: the probe is the next pass */
        if (mode != c->best)
            c->warm = 1;
        else
            c->since++;
        c->passes++;
        return;
    }
    c->warm = 0;
    if (mode == c->best || c->ewma[mode] < 0) {
        /* the mode that runs: a moving average over consecutive passes */
        c->ewma[mode] = c->ewma[mode] < 0 ? cost
                        : (1 - VG_BLAS_EWMA) * c->ewma[mode] + VG_BLAS_EWMA * cost;
    } else {
        /* a probe: the mean of the last two probes, so that the estimate follows a change of
         * load within two probes and one lucky pass does not decide alone */
        c->ewma[mode] = c->probe[mode] < 0 ? cost : 0.5 * (c->probe[mode] + cost);
        c->probe[mode] = cost;
    }
    c->since = mode == c->best ? c->since + 1 : 0;
    if (mode != c->best && c->gap < VG_BLAS_PROBE_EVERY)
        c->gap *= 2;
    /* a probe faster than the mode that runs, not yet enough to switch (its estimate is the
     * mean with the probe before, taken under other conditions): one more probe 2 passes later
     * instead of 32 or 128, so that the end of a load is found within a few passes; after that
     * one, back to the period (not 4, 8, 16 passes: two close modes would be probed often) */
    if (mode != c->best && c->ewma[1 - mode] >= 0) {
        if (c->confirm) {
            c->confirm = 0;
            c->gap = VG_BLAS_PROBE_EVERY;
        } else if (cost < c->ewma[1 - mode]) {
            c->confirm = 1;
            c->gap = VG_BLAS_PROBE_FIRST;
        }
    }
    if (c->ewma[0] >= 0 && c->ewma[1] >= 0)
        c->best = c->ewma[1] < c->ewma[0];
    if (c->best != was) {
        /* a switch: the mode left is tried again soon, its last probe taken to be its moving
         * average, which holds what made it slower (one or two faster probes bring it back) */
        c->probe[was] = c->ewma[was];
        c->gap = VG_BLAS_PROBE_FIRST;
        c->since = 0;
        c->confirm = 0;
    }
    c->passes++;
}

#if VG_HAVE_BLAS_BIND
static pthread_mutex_t vg_blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int vg_blas_depth = 0;           /* passes that hold the count at 1 */
static int vg_blas_saved = 1;           /* the count before the first of them */
static __thread int vg_blas_one = 0;    /* this thread's pass holds it */
static __thread int vg_blas_force = 0;  /* this pass runs every product in one thread */
static __thread double vg_blas_large = 0;   /* multiply-adds of this pass above the limit */

/* Find openblas_set_num_threads / openblas_get_num_threads (SciPy's wheels prefix them with
 * scipy_) among the libraries the library holding `blas_fn` depends on.  Returns 1 when both
 * were found. */
static int vg_blas_bind(const void *blas_fn)
{
    static const char *const names[][2] = {
        {"scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"},
        {"openblas_set_num_threads", "openblas_get_num_threads"},
        {"scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"},
        {"openblas_set_num_threads64_", "openblas_get_num_threads64_"},
    };
    Dl_info info;
    void *h;
    vg_blas_set = NULL;         /* a BLAS whose count cannot be reached: none bound */
    vg_blas_get = NULL;
    vg_blas_symbol = "";
    if (blas_fn == NULL || !dladdr(blas_fn, &info) || info.dli_fname == NULL)
        return 0;
    h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);   /* kept open: it stays loaded */
    if (h == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        void *s = dlsym(h, names[i][0]);
        void *g = dlsym(h, names[i][1]);
        if (s != NULL && g != NULL) {
            memcpy(&vg_blas_set, &s, sizeof(s));
            memcpy(&vg_blas_get, &g, sizeof(g));
            vg_blas_symbol = names[i][0];
            return 1;
        }
    }
    return 0;
}

/* Held by the probe while it sets the count itself, so that no pass takes or gives back the
 * count meanwhile (a pass that starts waits the few milliseconds). */
static void vg_blas_lock(void) { pthread_mutex_lock(&vg_blas_mu); }
static void vg_blas_unlock(void) { pthread_mutex_unlock(&vg_blas_mu); }

/* The count is read again under the mutex: a pass that found it bound before it waited here
 * may meet a library switched meanwhile (vg_blas_switch), whose count may not be reachable.
 * While any pass holds, no switch happens, so the drop acts on the library the hold did. */
static void vg_blas_hold_one(void)
{
    pthread_mutex_lock(&vg_blas_mu);
    if (vg_blas_depth++ == 0) {
        vg_blas_saved = vg_blas_get != NULL ? vg_blas_get() : 1;
        if (vg_blas_saved != 1)
            vg_blas_set(1);
    }
    pthread_mutex_unlock(&vg_blas_mu);
}

static void vg_blas_drop_one(void)
{
    pthread_mutex_lock(&vg_blas_mu);
    if (--vg_blas_depth == 0 && vg_blas_saved != 1 && vg_blas_set != NULL)
        vg_blas_set(vg_blas_saved);
    pthread_mutex_unlock(&vg_blas_mu);
}

/* Before a product of `mnk` multiply-adds (float64 counted twice by the caller). */
static inline void vg_blas_before(double mnk)
{
    int one;
    if (vg_blas_hands_off())
        return;
    one = mnk <= vg_blas_one_max;
    if (!one) {
        vg_blas_large += mnk;
        one = vg_blas_force;
    }
    if (one != vg_blas_one) {
        if (one)
            vg_blas_hold_one();
        else
            vg_blas_drop_one();
        vg_blas_one = one;
    }
}

/* At the end of a pass: give the count back if this thread held it. */
static inline void vg_blas_release(void)
{
    if (vg_blas_one) {
        vg_blas_drop_one();
        vg_blas_one = 0;
    }
    vg_blas_force = 0;
    vg_blas_large = 0;
}

/* Before a pass: the mode its products above the limit run in (1: one thread). */
static inline int vg_blas_pass_begin(const vg_blas_choice *c)
{
    int mode;
    vg_blas_large = 0;
    if (!vg_blas_adapt || vg_blas_hands_off()) {
        vg_blas_force = 0;
        return 0;
    }
    mode = vg_choice_pick(c);
    vg_blas_force = mode;
    return mode;
}

/* After a pass that took `seconds` in `mode`: learn from it (seconds per multiply-add) if it
 * had products above the limit (otherwise the mode made no difference), then give the count
 * back. */
static inline void vg_blas_pass_end(vg_blas_choice *c, int mode, double seconds)
{
    double large = vg_blas_large;
    vg_blas_release();
    if (!vg_blas_adapt || vg_blas_hands_off() || large <= 0)
        return;
    vg_choice_learn(c, mode, seconds / large);
}

/* Passes that hold the count at 1 right now (for tests). */
static int vg_blas_holders(void)
{
    int d;
    pthread_mutex_lock(&vg_blas_mu);
    d = vg_blas_depth;
    pthread_mutex_unlock(&vg_blas_mu);
    return d;
}

/* Compute the products with candidate `which` of vg_blas.h and bind its thread count; -1 (and
 * nothing changed) while a pass holds the count, -2 when `which` was never offered, else
 * whether the count was bound.  Until the caller has probed the new library
 * (blas_threads_change_bits) and set vg_blas_bits_vary, its count is left alone. */
static int vg_blas_switch(int which)
{
    int bound;
    pthread_mutex_lock(&vg_blas_mu);
    if (vg_blas_depth != 0) {
        pthread_mutex_unlock(&vg_blas_mu);
        return -1;
    }
    if (vg_blas_sgemm_of(which) == NULL) {
        pthread_mutex_unlock(&vg_blas_mu);
        return -2;
    }
    __atomic_store_n(&vg_blas_bits_vary, 1, __ATOMIC_RELAXED);
    vg_blas_use(which);
    bound = vg_blas_bind(vg_blas_sgemm_of(which));
    pthread_mutex_unlock(&vg_blas_mu);
    return bound;
}
#else
static void vg_blas_lock(void) {}
static void vg_blas_unlock(void) {}
static int vg_blas_bind(const void *blas_fn) { (void)blas_fn; return 0; }
static inline void vg_blas_before(double mnk) { (void)mnk; }
static inline void vg_blas_release(void) {}
static inline int vg_blas_pass_begin(const vg_blas_choice *c) { (void)c; return 0; }
static inline void vg_blas_pass_end(vg_blas_choice *c, int mode, double seconds)
{
    (void)c; (void)mode; (void)seconds;
}
static int vg_blas_holders(void) { return 0; }
static int vg_blas_switch(int which) { return vg_blas_use(which) ? 0 : -2; }
#endif

#endif /* VG_BLAS_THREADS_H */
