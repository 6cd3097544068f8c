/* Matrix products, linear, the losses and dropout: forward values, gradients, error cases. */
#include "bp_test.h"

static const int64_t d23[2] = {2, 3}, d32[2] = {3, 2}, d2[1] = {2};
static const double a_v[6] = {1, 2, 3, 4, 5, 6}, b_v[6] = {0.5, -1, 2, 0, -0.5, 1.5};
static bp_tensor target_idx, target_prob;

static bp_status op_matmul(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_matmul(g, in[0], in[1], out); }
static bp_status op_matmul_tt(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_matmul_t(g, in[0], in[1], true, true, out); }
static bp_status op_linear(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_linear(g, in[0], in[1], &in[2], out); }
static bp_status op_linear_nobias(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_linear(g, in[0], in[1], NULL, out); }
static bp_status op_linear_relu(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_linear_act(g, in[0], in[1], &in[2], BP_ACTIVATION_RELU, out); }
static bp_status op_linear_sigmoid(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_linear_act(g, in[0], in[1], &in[2], BP_ACTIVATION_SIGMOID, out); }
static bp_status op_linear_tanh_nobias(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_linear_act(g, in[0], in[1], NULL, BP_ACTIVATION_TANH, out); }
static bp_status op_mse(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_mse_loss(g, in[0], in[1], BP_REDUCTION_MEAN, out); }
static bp_status op_mse_none(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_mse_loss(g, in[0], in[1], BP_REDUCTION_NONE, out); }
static bp_status op_ce(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_cross_entropy(g, in[0], target_idx, out); }
static bp_status op_ce_ex(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    return bp_cross_entropy_ex(g, in[0], target_idx, BP_REDUCTION_SUM, 0.1, 1, out);
}
static bp_status op_bce(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    return bp_binary_cross_entropy_with_logits(g, in[0], target_prob, BP_REDUCTION_MEAN, out);
}

int main(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor a = t64_param(g, a_v, 6, d23, 2), b = t64_param(g, b_v, 6, d32, 2), y;

    /* [2,3]·[3,2] */
    const double ab[4] = {0.5 * 1 + 2 * 2 - 0.5 * 3, -1 * 1 + 0 * 2 + 1.5 * 3, 0.5 * 4 + 2 * 5 - 0.5 * 6, -4 + 0 + 9};
    bp_tensor mm[2] = {a, b};
    OK(op_matmul(g, mm, &y));
    check_values64(g, y, ab, 4, 1e-15, "matmul");
    /* aᵀ·bᵀ with the flags equals matmul of explicit transposes: [3,2]·[2,3] */
    bp_tensor at, bt, ref;
    OK(bp_transpose(g, a, 0, 1, &at));
    OK(bp_transpose(g, b, 0, 1, &bt));
    OK(bp_matmul(g, at, bt, &ref));
    double refv[9];
    OK(bp_tensor_read_f64(g, ref, refv, 9));
    OK(op_matmul_tt(g, mm, &y));
    check_values64(g, y, refv, 9, 1e-15, "matmul_t");
    gradcheck(g, "matmul", op_matmul, mm, 2);
    gradcheck(g, "matmul_t", op_matmul_tt, mm, 2);

    /* Batched matmul: [2,2,3]·[3,2] broadcasts the right operand. */
    const int64_t d223[3] = {2, 2, 3}, d222[3] = {2, 2, 2};
    double batch_v[12];
    for (int i = 0; i < 12; i++) batch_v[i] = 0.1 * i - 0.4;
    bp_tensor batched[2] = {t64_param(g, batch_v, 12, d223, 3), b};
    OK(op_matmul(g, batched, &y));
    check_dims(g, y, d222, 3, "batched matmul");
    gradcheck(g, "batched matmul", op_matmul, batched, 2);

    /* linear: x [2,3], W [2,3], bias [2] -> x·Wᵀ + bias */
    const double bias_v[2] = {0.25, -0.75};
    bp_tensor lin[3] = {a, t64_param(g, b_v, 6, d23, 2), t64_param(g, bias_v, 2, d2, 1)};
    const double xw[4] = {0.5 - 2 + 6 + 0.25, 0 - 1 + 4.5 - 0.75, 2 - 5 + 12 + 0.25, 0 - 2.5 + 9 - 0.75};
    OK(op_linear(g, lin, &y));
    check_values64(g, y, xw, 4, 1e-15, "linear");
    gradcheck(g, "linear", op_linear, lin, 3);
    gradcheck(g, "linear without bias", op_linear_nobias, lin, 2);

    /* linear_act: the activation of the same sums, in one op. */
    double act_v[4];
    for (int i = 0; i < 4; i++) act_v[i] = 1 / (1 + exp(-xw[i]));
    OK(op_linear_sigmoid(g, lin, &y));
    check_values64(g, y, act_v, 4, 1e-15, "linear_act sigmoid");
    OK(op_linear_relu(g, lin, &y));
    check_values64(g, y, xw, 4, 1e-15, "linear_act relu");
    const double xw_nobias[4] = {4.5, 3.5, 9, 6.5};
    for (int i = 0; i < 4; i++) act_v[i] = tanh(xw_nobias[i]);
    OK(op_linear_tanh_nobias(g, lin, &y));
    check_values64(g, y, act_v, 4, 1e-15, "linear_act tanh without bias");
    gradcheck(g, "linear_act relu", op_linear_relu, lin, 3);
    gradcheck(g, "linear_act sigmoid", op_linear_sigmoid, lin, 3);
    gradcheck(g, "linear_act tanh without bias", op_linear_tanh_nobias, lin, 2);

    /* mse_loss */
    bp_tensor pair[2] = {a, t64_param(g, b_v, 6, d23, 2)};
    double mse = 0, diff[6];
    for (int i = 0; i < 6; i++) {
        diff[i] = (a_v[i] - b_v[i]) * (a_v[i] - b_v[i]);
        mse += diff[i] / 6;
    }
    OK(op_mse(g, pair, &y));
    check_values64(g, y, &mse, 1, 1e-15, "mse mean");
    OK(op_mse_none(g, pair, &y));
    check_values64(g, y, diff, 6, 1e-15, "mse none");
    gradcheck(g, "mse", op_mse, pair, 2);
    gradcheck(g, "mse none", op_mse_none, pair, 2);

    /* cross_entropy: logits [2,3] with targets {2, 0}: mean of -log_softmax[target] */
    const int64_t tv[2] = {2, 0};
    OK(bp_tensor_from_i64(g, tv, 2, d2, 1, &target_idx));
    double ce = 0;
    for (int r = 0; r < 2; r++) {
        double s = 0;
        for (int c = 0; c < 3; c++) s += exp(a_v[r * 3 + c]);
        ce += (log(s) - a_v[r * 3 + tv[r]]) / 2;
    }
    OK(op_ce(g, &a, &y));
    check_values64(g, y, &ce, 1, 1e-14, "cross_entropy");
    gradcheck(g, "cross_entropy", op_ce, &a, 1);
    gradcheck(g, "cross_entropy sum, label smoothing, ignore_index", op_ce_ex, &a, 1);

    /* binary_cross_entropy_with_logits */
    const double probs[6] = {0, 1, 0.5, 0.25, 1, 0};
    bp_tensor logits = t64_param(g, b_v, 6, d23, 2);
    target_prob = t64(g, probs, 6, d23, 2);
    double bce = 0;
    for (int i = 0; i < 6; i++) {
        double s = 1 / (1 + exp(-b_v[i]));
        bce -= (probs[i] * log(s) + (1 - probs[i]) * log(1 - s)) / 6;
    }
    OK(op_bce(g, &logits, &y));
    check_values64(g, y, &bce, 1, 1e-14, "bce with logits");
    gradcheck(g, "bce with logits", op_bce, &logits, 1);

    /* dropout: identity when not training or p = 0; each element either 0 or x/(1-p) otherwise. */
    OK(bp_dropout(g, a, 0.5, false, &y));
    CHECK(memcmp(&y, &a, sizeof a) == 0);
    OK(bp_graph_manual_seed(g, 3));
    OK(bp_dropout(g, a, 0.5, true, &y));
    double dv[6];
    OK(bp_tensor_read_f64(g, y, dv, 6));
    for (int i = 0; i < 6; i++) CHECK(dv[i] == 0 || dv[i] == 2 * a_v[i]);
    OK(bp_dropout(g, a, 1.0, true, &y));
    OK(bp_tensor_read_f64(g, y, dv, 6));
    for (int i = 0; i < 6; i++) CHECK(dv[i] == 0);
    FAILS(bp_dropout(g, a, 1.5, true, &y), BP_ERR_INVALID_ARGUMENT);

    /* Errors. */
    FAILS(bp_matmul(g, a, a, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_linear(g, a, b, NULL, &y), BP_ERR_SHAPE_MISMATCH);
    bp_tensor wrong_bias = t64(g, a_v, 3, d32, 1);
    FAILS(bp_linear(g, a, lin[1], &wrong_bias, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_linear_act(g, a, b, NULL, BP_ACTIVATION_RELU, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_linear_act(g, a, lin[1], &wrong_bias, BP_ACTIVATION_TANH, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_linear_act(g, a, lin[1], NULL, 3, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_linear_act(g, a, lin[1], NULL, -1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_linear_act(g, a, lin[1], NULL, BP_ACTIVATION_RELU, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_mse_loss(g, a, b, BP_REDUCTION_MEAN, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_mse_loss(g, a, pair[1], 7, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_cross_entropy(g, a, logits, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_cross_entropy_ex(g, a, target_idx, BP_REDUCTION_MEAN, 1.5, -100, &y), BP_ERR_INVALID_ARGUMENT);
    const int64_t out_of_range[2] = {3, 0};
    bp_tensor bad_target;
    OK(bp_tensor_from_i64(g, out_of_range, 2, d2, 1, &bad_target));
    FAILS(bp_cross_entropy(g, a, bad_target, &y), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
    return bp_test_finish("ops_linalg_loss");
}
