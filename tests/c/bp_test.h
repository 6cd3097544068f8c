/* Helpers shared by the C tests: checks that report file, line and the library's message, and a
 * finite-difference gradient check that works for any op. Header-only so each test is one file. */
#ifndef BP_TEST_H
#define BP_TEST_H

#include "bp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bp_test_failures = 0;

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                 \
            bp_test_failures++;                                                                      \
        }                                                                                            \
    } while (0)

/* Fails the test (and stops it: later steps would only cascade) unless the call returns BP_OK. */
#define OK(call)                                                                                     \
    do {                                                                                             \
        bp_status s_ = (call);                                                                       \
        if (s_ != BP_OK) {                                                                           \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call,                \
                    bp_status_name(s_), bp_last_error_message());                                   \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

/* Checks that the call fails with exactly `code` and leaves a non-empty message. */
#define FAILS(call, code)                                                                            \
    do {                                                                                             \
        bp_status s_ = (call);                                                                       \
        if (s_ != (code)) {                                                                          \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, #call,  \
                    bp_status_name(s_), bp_status_name(code), bp_last_error_message());              \
            bp_test_failures++;                                                                      \
        } else if (bp_last_error_message()[0] == '\0') {                                             \
            fprintf(stderr, "%s:%d: %s failed without a message\n", __FILE__, __LINE__, #call);      \
            bp_test_failures++;                                                                      \
        }                                                                                            \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                        \
    do {                                                                                             \
        double a_ = (a), b_ = (b);                                                                   \
        if (!(fabs(a_ - b_) <= (tol))) {                                                             \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tolerance %g)\n", __FILE__, __LINE__,   \
                    #a, a_, b_, (double)(tol));                                                      \
            bp_test_failures++;                                                                      \
        }                                                                                            \
    } while (0)

static inline int bp_test_finish(const char *name) {
    if (bp_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, bp_test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

/* A float64 tensor from literal values. */
static inline bp_tensor t64(bp_graph *g, const double *v, size_t n, const int64_t *dims, size_t ndim) {
    bp_tensor t;
    OK(bp_tensor_from_f64(g, v, n, dims, ndim, &t));
    return t;
}

static inline bp_tensor t64_param(bp_graph *g, const double *v, size_t n, const int64_t *dims, size_t ndim) {
    bp_tensor t = t64(g, v, n, dims, ndim);
    OK(bp_tensor_set_requires_grad(g, t, true));
    return t;
}

/* Checks that a tensor holds `expect` (float64) to within tol. */
static inline void check_values64(bp_graph *g, bp_tensor t, const double *expect, size_t n, double tol, const char *what) {
    size_t numel = 0;
    OK(bp_tensor_numel(g, t, &numel));
    if (numel != n) {
        fprintf(stderr, "%s: %zu elements, expected %zu\n", what, numel, n);
        bp_test_failures++;
        return;
    }
    double *got = (double *)malloc(n * sizeof(double) + 1);
    OK(bp_tensor_read_f64(g, t, got, n));
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(got[i] - expect[i]) <= tol * (1.0 + fabs(expect[i])))) {
            fprintf(stderr, "%s: element %zu is %.12g, expected %.12g\n", what, i, got[i], expect[i]);
            bp_test_failures++;
            break;
        }
    }
    free(got);
}

static inline void check_dims(bp_graph *g, bp_tensor t, const int64_t *expect, size_t ndim, const char *what) {
    int64_t dims[8];
    size_t got = 99;
    OK(bp_tensor_shape(g, t, dims, 8, &got));
    if (got != ndim || (ndim && memcmp(dims, expect, ndim * sizeof(int64_t)) != 0)) {
        fprintf(stderr, "%s: wrong shape (rank %zu, expected %zu)\n", what, got, ndim);
        bp_test_failures++;
    }
}

/* An op under test: reads inputs[0..n], writes its result to *out. */
typedef bp_status (*bp_test_op)(bp_graph *g, const bp_tensor *inputs, bp_tensor *out);

/* loss = sum(op(inputs) * w) for fixed weights w (so that every output element matters differently). */
static inline bp_status bp_test_weighted_loss(bp_graph *g, bp_test_op op, const bp_tensor *inputs, bp_tensor *loss) {
    bp_tensor y, w, yw;
    int64_t dims[8];
    size_t ndim, numel;
    bp_status s = op(g, inputs, &y);
    if (s != BP_OK) return s;
    OK(bp_tensor_shape(g, y, dims, 8, &ndim));
    OK(bp_tensor_numel(g, y, &numel));
    OK(bp_tensor_new(g, BP_DTYPE_F64, dims, ndim, &w));
    double *wv = (double *)malloc(numel * sizeof(double) + 1);
    for (size_t i = 0; i < numel; i++) wv[i] = 0.5 + 0.25 * (double)(i % 7) - 0.1 * (double)(i % 3);
    OK(bp_tensor_write_f64(g, w, wv, numel));
    free(wv);
    OK(bp_mul(g, y, w, &yw));
    return bp_sum(g, yw, NULL, 0, false, loss);
}

/* Compares the gradient autograd gives for every input that requires grad with central differences. */
static inline void gradcheck(bp_graph *g, const char *name, bp_test_op op, bp_tensor *inputs, size_t n) {
    bp_tensor loss, grads[8], diff[8];
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        bool rg = false;
        OK(bp_tensor_requires_grad(g, inputs[i], &rg));
        if (rg) diff[nd++] = inputs[i];
    }
    OK(bp_test_weighted_loss(g, op, inputs, &loss));
    OK(bp_grad_of(g, &loss, 1, diff, nd, NULL, 0, false, false, grads, nd));
    OK(bp_graph_set_grad_enabled(g, false, NULL));
    for (size_t k = 0; k < nd; k++) {
        size_t numel;
        OK(bp_tensor_numel(g, diff[k], &numel));
        double *x = (double *)malloc(numel * sizeof(double) + 1);
        double *analytic = (double *)malloc(numel * sizeof(double) + 1);
        OK(bp_tensor_read_f64(g, diff[k], x, numel));
        OK(bp_tensor_read_f64(g, grads[k], analytic, numel));
        for (size_t j = 0; j < numel; j++) {
            const double eps = 1e-6, orig = x[j];
            double lp, lm;
            bp_tensor l;
            x[j] = orig + eps;
            OK(bp_tensor_write_f64(g, diff[k], x, numel));
            OK(bp_test_weighted_loss(g, op, inputs, &l));
            OK(bp_tensor_item(g, l, &lp));
            x[j] = orig - eps;
            OK(bp_tensor_write_f64(g, diff[k], x, numel));
            OK(bp_test_weighted_loss(g, op, inputs, &l));
            OK(bp_tensor_item(g, l, &lm));
            x[j] = orig;
            OK(bp_tensor_write_f64(g, diff[k], x, numel));
            double numeric = (lp - lm) / (2 * eps);
            if (!(fabs(numeric - analytic[j]) <= 1e-5 * (1.0 + fabs(numeric)))) {
                fprintf(stderr, "gradcheck %s: input %zu element %zu: autograd %.10g, finite differences %.10g\n",
                        name, k, j, analytic[j], numeric);
                bp_test_failures++;
                break;
            }
        }
        free(x);
        free(analytic);
    }
    OK(bp_graph_set_grad_enabled(g, true, NULL));
}

#endif
