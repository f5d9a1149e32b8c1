/*
 * vg_blas.h -- which BLAS computes the products that vgcore's own kernel leaves to a BLAS
 * (those of layers wider than vg_gemm.h takes), and the calls into it.
 *
 * Two candidates are always in the process:
 *   - SciPy's OpenBLAS, through scipy.linalg.cython_blas (32-bit integers);
 *   - NumPy's, when NumPy's wheel carries its own OpenBLAS (scipy-openblas, 64-bit integers,
 *     symbols scipy_sgemm_64_ / scipy_dgemm_64_), which NumPy loads privately: it is found
 *     among the loaded objects (dl_iterate_phdr), not through the global symbol table.
 * Both are offered when the module loads (vg_blas_offer); vg_blas_use() picks the one that
 * computes, as the Python layer chooses (vgcore.use_blas), and the thread controls of
 * vg_blas_threads.h bind to the same library.  NumPy's is preferred:
 * user code calls it anyway, so vgcore's products share its thread pool instead of a second
 * one spinning beside it, and its release may be newer than SciPy's (on an AMD EPYC, NumPy's
 * OpenBLAS 0.3.31 computed vgcore's weight gradients 10-13% faster than SciPy's 0.3.30).
 *
 * The calls pass their integers as the bound library takes them; vgcore's dimensions fit in
 * an int either way.
 */
#ifndef VG_BLAS_H
#define VG_BLAS_H

#include <stdint.h>
#include <string.h>

#if defined(__linux__) || defined(__APPLE__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#define VG_HAVE_BLAS_DLADDR 1
#else
#define VG_HAVE_BLAS_DLADDR 0
#endif
#if defined(__linux__)
#include <link.h>
#define VG_HAVE_BLAS_FIND 1         /* dl_iterate_phdr: NumPy's OpenBLAS can be found */
#else
#define VG_HAVE_BLAS_FIND 0
#endif

typedef void (*vg_sgemm32_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                              float *, int *, float *, float *, int *);
typedef void (*vg_dgemm32_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                              double *, int *, double *, double *, int *);
typedef void (*vg_sgemm64_fn)(char *, char *, int64_t *, int64_t *, int64_t *, float *,
                              float *, int64_t *, float *, int64_t *, float *, float *,
                              int64_t *);
typedef void (*vg_dgemm64_fn)(char *, char *, int64_t *, int64_t *, int64_t *, double *,
                              double *, int64_t *, double *, int64_t *, double *, double *,
                              int64_t *);

/* A BLAS: its sgemm and dgemm (Fortran interface, without hidden string lengths), and
 * whether they take 64-bit integers. */
typedef struct {
    void *s, *d;
    int int64;
} vg_blas_lib;

/* [0]: SciPy's, [1]: NumPy's.  A pass reads vg_blas_cur once per product, so a switch (which
 * the Python layer makes only while no pass holds the BLAS's thread count) never pairs one
 * library's sgemm with the other's integers. */
static vg_blas_lib vg_blas_libs[2];
static const vg_blas_lib *vg_blas_cur = NULL;

static inline const vg_blas_lib *vg_blas_current(void)
{
    return __atomic_load_n(&vg_blas_cur, __ATOMIC_ACQUIRE);
}

/* Set candidate `which` (0 SciPy's, 1 NumPy's); 0 (and nothing set) when s or d is NULL. */
static int vg_blas_offer(int which, void *s, void *d, int int64)
{
    if (s == NULL || d == NULL)
        return 0;
    vg_blas_libs[which].s = s;
    vg_blas_libs[which].d = d;
    vg_blas_libs[which].int64 = int64;
    return 1;
}

/* Compute the products with candidate `which` from now on; 0 when it was never offered. */
static int vg_blas_use(int which)
{
    if (vg_blas_libs[which].s == NULL)
        return 0;
    __atomic_store_n(&vg_blas_cur, &vg_blas_libs[which], __ATOMIC_RELEASE);
    return 1;
}

static inline int vg_blas_in_use(void)
{
    const vg_blas_lib *b = vg_blas_current();
    return b == NULL ? -1 : (int)(b - vg_blas_libs);
}

/* Column-major C (m x n) = alpha op(A) op(B) + beta C through the BLAS in use. */
static inline void vg_sgemm(char ta, char tb, int m, int n, int k, float alpha, float *a,
                            int lda, float *b, int ldb, float beta, float *c, int ldc)
{
    const vg_blas_lib *L = vg_blas_current();
    if (L->int64) {
        int64_t M = m, N = n, K = k, LA = lda, LB = ldb, LC = ldc;
        ((vg_sgemm64_fn)L->s)(&ta, &tb, &M, &N, &K, &alpha, a, &LA, b, &LB, &beta, c, &LC);
    } else {
        ((vg_sgemm32_fn)L->s)(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
    }
}

static inline void vg_dgemm(char ta, char tb, int m, int n, int k, double alpha, double *a,
                            int lda, double *b, int ldb, double beta, double *c, int ldc)
{
    const vg_blas_lib *L = vg_blas_current();
    if (L->int64) {
        int64_t M = m, N = n, K = k, LA = lda, LB = ldb, LC = ldc;
        ((vg_dgemm64_fn)L->d)(&ta, &tb, &M, &N, &K, &alpha, a, &LA, b, &LB, &beta, c, &LC);
    } else {
        ((vg_dgemm32_fn)L->d)(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
    }
}

/* The sgemm of candidate `which` (NULL when not offered): what vg_blas_bind and reports
 * locate the library by. */
static const void *vg_blas_sgemm_of(int which)
{
    return vg_blas_libs[which].s;
}

/* The file of candidate `which`'s OpenBLAS ("" when unknown or not offered): where its
 * thread control lives, found from its sgemm (SciPy's sgemm is a wrapper in cython_blas, which
 * calls the library it links), else the file of the sgemm itself. */
static const char *vg_blas_file(int which)
{
#if VG_HAVE_BLAS_DLADDR
    static const char *const controls[] = {
        "scipy_openblas_set_num_threads", "openblas_set_num_threads",
        "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
    };
    Dl_info info;
    void *h;
    if (vg_blas_libs[which].s == NULL || !dladdr(vg_blas_libs[which].s, &info)
        || info.dli_fname == NULL)
        return "";
    h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL)
        return info.dli_fname;
    for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++) {
        Dl_info at;
        void *f = dlsym(h, controls[i]);
        if (f != NULL && dladdr(f, &at) && at.dli_fname != NULL) {
            dlclose(h);         /* NumPy or SciPy keeps it loaded: the name stays valid */
            return at.dli_fname;
        }
    }
    dlclose(h);
    return info.dli_fname;
#else
    (void)which;
    return "";
#endif
}

#if VG_HAVE_BLAS_FIND
typedef struct {
    void *s, *d;
} vg_blas_found;

static int vg_blas_visit(struct dl_phdr_info *info, size_t size, void *data)
{
    vg_blas_found *f = (vg_blas_found *)data;
    void *h, *s, *d;
    (void)size;
    /* NumPy's wheel keeps its OpenBLAS in numpy.libs (NumPy 2: scipy-openblas64); another
     * scipy_openblas64_ loaded from elsewhere is not NumPy's */
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, "scipy_openblas64_") == NULL
        || strstr(info->dlpi_name, "numpy") == NULL)
        return 0;
    h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);  /* kept open: it stays loaded */
    if (h == NULL)
        return 0;
    s = dlsym(h, "scipy_sgemm_64_");
    d = dlsym(h, "scipy_dgemm_64_");
    if (s == NULL || d == NULL)
        return 0;
    f->s = s;
    f->d = d;
    return 1;
}
#endif

/* Find NumPy's OpenBLAS among the loaded objects (scipy-openblas, 64-bit integers) and
 * offer it as candidate 1; 0 when there is none (NumPy built against another BLAS, or not on
 * Linux). */
static int vg_blas_offer_numpys(void)
{
#if VG_HAVE_BLAS_FIND
    vg_blas_found f = {NULL, NULL};
    dl_iterate_phdr(vg_blas_visit, &f);
    return vg_blas_offer(1, f.s, f.d, 1);
#else
    return 0;
#endif
}

#endif /* VG_BLAS_H */
