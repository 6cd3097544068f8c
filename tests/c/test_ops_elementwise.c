/* Elementwise ops: forward values against the C library's math, gradients against finite differences,
 * broadcasting, and their error cases. */
#include "bp_test.h"

static const double xs[4] = {-1.5, -0.5, 0.5, 2.0};
static const double pos[4] = {0.25, 0.5, 1.5, 3.0}; /* for log, sqrt, pow */
static const int64_t d4[1] = {4};

#define UNARY(name)                                                                                  \
    static bp_status op_##name(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_##name(g, in[0], out); }
UNARY(neg)
UNARY(exp)
UNARY(log)
UNARY(sqrt)
UNARY(abs)
UNARY(relu)
UNARY(sigmoid)
UNARY(tanh)
UNARY(gelu)
static bp_status op_leaky(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_leaky_relu(g, in[0], 0.1, out); }
static bp_status op_pow(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_pow(g, in[0], 2.5, out); }
static bp_status op_adds(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_add_scalar(g, in[0], 3.0, out); }
static bp_status op_muls(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_mul_scalar(g, in[0], -2.0, out); }
#define BINARY(name)                                                                                 \
    static bp_status op_##name(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_##name(g, in[0], in[1], out); }
BINARY(add)
BINARY(sub)
BINARY(mul)
BINARY(div)

typedef struct {
    const char *name;
    bp_test_op op;
    const double *input;
    double (*ref)(double);
} unary_case;

static double ref_neg(double x) { return -x; }
static double ref_relu(double x) { return x > 0 ? x : 0; }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double ref_leaky(double x) { return x > 0 ? x : 0.1 * x; }
static double ref_pow(double x) { return pow(x, 2.5); }
static double ref_adds(double x) { return x + 3; }
static double ref_muls(double x) { return -2 * x; }

static void unary_ops(void) {
    const unary_case cases[] = {
        {"neg", op_neg, xs, ref_neg},        {"exp", op_exp, xs, exp},
        {"log", op_log, pos, log},           {"sqrt", op_sqrt, pos, sqrt},
        {"abs", op_abs, xs, fabs},           {"relu", op_relu, xs, ref_relu},
        {"sigmoid", op_sigmoid, xs, ref_sigmoid}, {"tanh", op_tanh, xs, tanh},
        {"gelu", op_gelu, xs, ref_gelu},     {"leaky_relu", op_leaky, xs, ref_leaky},
        {"pow", op_pow, pos, ref_pow},       {"add_scalar", op_adds, xs, ref_adds},
        {"mul_scalar", op_muls, xs, ref_muls},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bp_graph *g;
        OK(bp_graph_new(&g));
        bp_tensor x = t64_param(g, cases[c].input, 4, d4, 1), y;
        double expect[4];
        for (int i = 0; i < 4; i++) expect[i] = cases[c].ref(cases[c].input[i]);
        OK(cases[c].op(g, &x, &y));
        check_values64(g, y, expect, 4, 1e-12, cases[c].name);
        gradcheck(g, cases[c].name, cases[c].op, &x, 1);
        /* float32 works too and gives the same values to float precision. */
        float xf[4], yf[4];
        for (int i = 0; i < 4; i++) xf[i] = (float)cases[c].input[i];
        bp_tensor x32, y32;
        OK(bp_tensor_from_f32(g, xf, 4, d4, 1, &x32));
        OK(cases[c].op(g, &x32, &y32));
        OK(bp_tensor_read_f32(g, y32, yf, 4));
        for (int i = 0; i < 4; i++) CHECK_NEAR(yf[i], expect[i], 1e-5 * (1 + fabs(expect[i])));
        OK(bp_graph_free(g));
    }
}

static void binary_ops_broadcast(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    const int64_t da[2] = {2, 3}, db[1] = {3}, dcol[2] = {2, 1};
    const double av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {0.5, -1, 2}, cv[2] = {10, 20};
    bp_tensor in[2] = {t64_param(g, av, 6, da, 2), t64_param(g, bv, 3, db, 1)}, y;
    const double add[6] = {1.5, 1, 5, 4.5, 4, 8}, sub[6] = {0.5, 3, 1, 3.5, 6, 4};
    const double mul[6] = {0.5, -2, 6, 2, -5, 12}, dv[6] = {2, -2, 1.5, 8, -5, 3};
    OK(bp_add(g, in[0], in[1], &y));
    check_values64(g, y, add, 6, 0, "add");
    OK(bp_sub(g, in[0], in[1], &y));
    check_values64(g, y, sub, 6, 0, "sub");
    OK(bp_mul(g, in[0], in[1], &y));
    check_values64(g, y, mul, 6, 0, "mul");
    OK(bp_div(g, in[0], in[1], &y));
    check_values64(g, y, dv, 6, 0, "div");
    check_dims(g, y, da, 2, "div shape");
    gradcheck(g, "add", op_add, in, 2);
    gradcheck(g, "sub", op_sub, in, 2);
    gradcheck(g, "mul", op_mul, in, 2);
    gradcheck(g, "div", op_div, in, 2);
    /* [2,1] with [3] broadcasts to [2,3] on both sides. */
    bp_tensor col[2] = {t64_param(g, cv, 2, dcol, 2), in[1]};
    const int64_t d23[2] = {2, 3};
    OK(bp_mul(g, col[0], col[1], &y));
    check_dims(g, y, d23, 2, "outer broadcast");
    gradcheck(g, "mul outer broadcast", op_mul, col, 2);

    /* Errors: shapes that do not broadcast, mixed element types, a tensor of another graph. */
    const int64_t d4b[1] = {4};
    bp_tensor four = t64(g, xs, 4, d4b, 1), f32;
    FAILS(bp_add(g, in[0], four, &y), BP_ERR_SHAPE_MISMATCH);
    OK(bp_tensor_new(g, BP_DTYPE_F32, db, 1, &f32));
    FAILS(bp_mul(g, in[1], f32, &y), BP_ERR_DTYPE);
    bp_tensor idx;
    OK(bp_tensor_new(g, BP_DTYPE_I64, db, 1, &idx));
    FAILS(bp_exp(g, idx, &y), BP_ERR_DTYPE);
    OK(bp_graph_free(g));
}

/* x * detach(x): autograd rightly gives detach(x), while the function's true derivative is 2x, so the
 * gradient check must reject it. This keeps the checker honest: a checker that passes everything
 * would make every gradcheck above meaningless. */
static bp_status op_wrong_gradient(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    bp_tensor d;
    bp_status s = bp_detach(g, in[0], &d);
    return s == BP_OK ? bp_mul(g, in[0], d, out) : s;
}

static void the_gradient_check_catches_a_wrong_gradient(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor x = t64_param(g, xs, 4, d4, 1);
    int before = bp_test_failures;
    fprintf(stderr, "(the next gradcheck message is expected)\n");
    gradcheck(g, "x * detach(x)", op_wrong_gradient, &x, 1);
    CHECK(bp_test_failures == before + 1);
    bp_test_failures = before;
    OK(bp_graph_free(g));
}

int main(void) {
    the_gradient_check_catches_a_wrong_gradient();
    unary_ops();
    binary_ops_broadcast();
    return bp_test_finish("ops_elementwise");
}
