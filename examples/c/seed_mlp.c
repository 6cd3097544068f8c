/* The seed document's example, in C: a 20 -> 13 (ReLU) -> 8 (sigmoid) -> 3 network trained with
 * cross-entropy on random data, exactly as the PyTorch original:
 *
 *   torch.manual_seed(212)
 *   X = torch.rand((500, 20)) * 100
 *   y = torch.randint(0, 3, (500,))
 *   model = Sequential(Linear(20, 13, bias=False), ReLU(), Linear(13, 8, bias=False), Sigmoid(), Linear(8, 3))
 *   loss = CrossEntropyLoss()(model(X), y); loss.backward(); print(model[0].weight.grad)
 *
 * followed by 100 plain SGD steps (lr 0.01) that print the loss every 10 steps. Exits with 1 when the
 * loss did not fall. Build: cc seed_mlp.c $(pkg-config --cflags --libs bp) -lm */
#include <bp.h>

#include <math.h>
#include <stdio.h>

#define TRY(call)                                                                                    \
    do {                                                                                             \
        bp_status s_ = (call);                                                                       \
        if (s_ != BP_OK) {                                                                           \
            fprintf(stderr, "%s failed: %s: %s\n", #call, bp_status_name(s_), bp_last_error_message()); \
            return 1;                                                                                \
        }                                                                                            \
    } while (0)

enum { N = 500, IN = 20, H1 = 13, H2 = 8, OUT = 3, STEPS = 100 };

/* PyTorch's default Linear weight init, kaiming_uniform_(a = sqrt(5)): U(-bound, bound). */
static double kaiming_bound(int fan_in) {
    double a = sqrt(5.0);
    double gain = sqrt(2.0 / (1.0 + a * a));
    return sqrt(3.0) * (gain / sqrt((double)fan_in));
}

/* A persistent parameter of the given shape, uniform on [-bound, bound), requiring grad. */
static bp_status parameter(bp_graph *g, int64_t rows, int64_t cols, size_t ndim, double bound, bp_tensor *out) {
    int64_t dims[2] = {rows, cols};
    bp_tensor p;
    bp_status s = bp_tensor_rand(g, BP_DTYPE_F32, dims, ndim, -bound, bound, &p);
    if (s == BP_OK) s = bp_tensor_set_persistent(g, p, true);
    if (s == BP_OK) s = bp_tensor_set_requires_grad(g, p, true);
    if (s == BP_OK) *out = p;
    return s;
}

/* loss = cross_entropy(linear(sigmoid(linear(relu(linear(X, W1)), W2)), W3, b3), y) */
static bp_status forward(bp_graph *g, bp_tensor X, bp_tensor y, const bp_tensor *params, bp_tensor *loss) {
    bp_tensor a, h1, b, h2, z;
    bp_status s = bp_linear(g, X, params[0], NULL, &a);
    if (s == BP_OK) s = bp_relu(g, a, &h1);
    if (s == BP_OK) s = bp_linear(g, h1, params[1], NULL, &b);
    if (s == BP_OK) s = bp_sigmoid(g, b, &h2);
    if (s == BP_OK) s = bp_linear(g, h2, params[2], &params[3], &z);
    if (s == BP_OK) s = bp_cross_entropy(g, z, y, loss);
    return s;
}

int main(void) {
    bp_graph *g = NULL;
    bp_tensor X, X01, y, params[4];
    int64_t xdims[2] = {N, IN}, ydims[1] = {N};
    float grad_w1[H1 * IN];
    double first_loss = 0, loss_value = 0;

    printf("backprop %s (header %s)\n", bp_version_string(), BP_VERSION_STRING);
    TRY(bp_graph_new(&g));
    TRY(bp_graph_manual_seed(g, 212));
    TRY(bp_tensor_rand(g, BP_DTYPE_F32, xdims, 2, 0.0, 1.0, &X01));
    TRY(bp_mul_scalar(g, X01, 100.0, &X));
    TRY(bp_tensor_randint(g, 0, 3, ydims, 1, &y));
    TRY(bp_tensor_set_persistent(g, X, true));
    TRY(bp_tensor_set_persistent(g, y, true));
    TRY(parameter(g, H1, IN, 2, kaiming_bound(IN), &params[0]));
    TRY(parameter(g, H2, H1, 2, kaiming_bound(H1), &params[1]));
    TRY(parameter(g, OUT, H2, 2, kaiming_bound(H2), &params[2]));
    TRY(parameter(g, OUT, 0, 1, 1.0 / sqrt((double)H2), &params[3]));

    /* The seed example: one forward and backward, then the first layer's weight gradient. */
    bp_tensor loss, grad;
    TRY(forward(g, X, y, params, &loss));
    TRY(bp_tensor_item(g, loss, &first_loss));
    TRY(bp_backward(g, loss, NULL, false, false));
    TRY(bp_grad(g, params[0], &grad));
    TRY(bp_tensor_read_f32(g, grad, grad_w1, H1 * IN));
    printf("loss %.7f\nW1.grad [%d, %d]:\n", first_loss, H1, IN);
    for (int r = 0; r < H1; r++) {
        for (int c = 0; c < IN; c++) printf("%s%11.4e", c ? " " : "  ", grad_w1[r * IN + c]);
        printf("\n");
    }

    /* 100 SGD steps: w <- w - lr * w.grad, computed with ops under no-grad and written back in place. */
    const double lr = 0.01;
    for (int step = 0; step < STEPS; step++) {
        for (int p = 0; p < 4; p++) TRY(bp_zero_grad(g, params[p]));
        TRY(bp_graph_reset(g)); /* drops the last step's intermediates; parameters and data stay */
        TRY(forward(g, X, y, params, &loss));
        TRY(bp_tensor_item(g, loss, &loss_value));
        if (step % 10 == 0) printf("step %3d  loss %.7f\n", step, loss_value);
        TRY(bp_backward(g, loss, NULL, false, false));
        TRY(bp_graph_set_grad_enabled(g, false, NULL));
        for (int p = 0; p < 4; p++) {
            bp_tensor gp, scaled, updated;
            TRY(bp_grad(g, params[p], &gp));
            TRY(bp_mul_scalar(g, gp, lr, &scaled));
            TRY(bp_sub(g, params[p], scaled, &updated));
            TRY(bp_tensor_assign(g, params[p], updated));
        }
        TRY(bp_graph_set_grad_enabled(g, true, NULL));
    }
    TRY(bp_graph_reset(g));
    TRY(forward(g, X, y, params, &loss));
    TRY(bp_tensor_item(g, loss, &loss_value));
    printf("after %d steps  loss %.7f\n", STEPS, loss_value);
    TRY(bp_graph_free(g));

    if (!(loss_value < first_loss)) {
        fprintf(stderr, "the loss did not fall: %.7f -> %.7f\n", first_loss, loss_value);
        return 1;
    }
    printf("the loss fell: %.7f -> %.7f\n", first_loss, loss_value);
    return 0;
}
