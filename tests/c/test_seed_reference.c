/* The C path end to end: the seed network built from C reproduces PyTorch's forward values, loss,
 * gradients and 10 SGD steps (tests/data/seed, tolerances from its manifest.json). */
#include "seed_model.h"

static const char *data_dir = ".";

/* Reads a raw little-endian float32 file of exactly n values. */
static float *read_f32_file(const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    float *v = (float *)malloc(n * sizeof(float));
    size_t got = fread(v, sizeof(float), n, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        fprintf(stderr, "%s does not hold exactly %zu float32 values\n", path, n);
        exit(1);
    }
    return v;
}

/* |got - want| <= atol + rtol * |want| elementwise, for a float32 tensor against a reference file. */
static void compare(bp_graph *g, bp_tensor t, const char *file, size_t n, double rtol, double atol) {
    float *want = read_f32_file(file, n);
    float *got = (float *)malloc(n * sizeof(float));
    OK(bp_tensor_read_f32(g, t, got, n));
    double worst = 0;
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        double excess = err - (atol + rtol * fabs((double)want[i]));
        if (excess > worst) {
            worst = excess;
            bad = i;
        }
    }
    if (bad != n) {
        fprintf(stderr, "%s: element %zu is %.9g, PyTorch has %.9g\n", file, bad, got[bad], want[bad]);
        bp_test_failures++;
    }
    free(want);
    free(got);
}

int main(int argc, char **argv) {
    if (argc > 1) data_dir = argv[1];
    seed_model m;
    seed_init(&m);

    /* Data and initial weights: bit for bit (the generator is PyTorch's). */
    compare(m.g, m.X, "seed_X.f32", SEED_N * SEED_IN, 0, 0);
    compare(m.g, m.W1, "seed_W1_init.f32", SEED_H1 * SEED_IN, 0, 0);
    compare(m.g, m.W2, "seed_W2_init.f32", SEED_H2 * SEED_H1, 0, 0);
    compare(m.g, m.W3, "seed_W3_init.f32", SEED_OUT * SEED_H2, 0, 0);
    compare(m.g, m.b3, "seed_b3_init.f32", SEED_OUT, 0, 0);
    {
        int64_t y[SEED_N], want[SEED_N];
        char path[1024];
        snprintf(path, sizeof path, "%s/seed_y.i64", data_dir);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        if (f) {
            CHECK(fread(want, sizeof(int64_t), SEED_N, f) == SEED_N);
            fclose(f);
            OK(bp_tensor_read_i64(m.g, m.y, y, SEED_N));
            CHECK(memcmp(y, want, sizeof y) == 0);
        }
    }

    /* Forward (rtol 1e-5, atol 1e-4), loss (abs 1e-5), gradients (rtol 1e-4, atol 1e-6). */
    bp_tensor h1, h2, z, gW1, gW2, gW3, gb3;
    bp_tensor loss = seed_forward(&m, &h1, &h2, &z);
    compare(m.g, h1, "seed_h1_relu.f32", SEED_N * SEED_H1, 1e-5, 1e-4);
    compare(m.g, h2, "seed_h2_sigmoid.f32", SEED_N * SEED_H2, 1e-5, 1e-4);
    compare(m.g, z, "seed_zhat.f32", SEED_N * SEED_OUT, 1e-5, 1e-4);
    double l;
    OK(bp_tensor_item(m.g, loss, &l));
    CHECK_NEAR(l, 1.128248691558838, 1e-5);
    OK(bp_backward(m.g, loss, NULL, false, false));
    OK(bp_grad(m.g, m.W1, &gW1));
    OK(bp_grad(m.g, m.W2, &gW2));
    OK(bp_grad(m.g, m.W3, &gW3));
    OK(bp_grad(m.g, m.b3, &gb3));
    compare(m.g, gW1, "seed_grad_W1.f32", SEED_H1 * SEED_IN, 1e-4, 1e-6);
    compare(m.g, gW2, "seed_grad_W2.f32", SEED_H2 * SEED_H1, 1e-4, 1e-6);
    compare(m.g, gW3, "seed_grad_W3.f32", SEED_OUT * SEED_H2, 1e-4, 1e-6);
    compare(m.g, gb3, "seed_grad_b3.f32", SEED_OUT, 1e-4, 1e-6);

    /* 10 SGD steps with lr 0.01: each step's loss, then the parameters (rtol 1e-5, atol 1e-6). */
    static const double losses[10] = {1.128248691558838, 1.1266995668411255, 1.125299096107483, 1.1240160465240479,
                                      1.122865915298462, 1.1218043565750122, 1.1208298206329346, 1.1199214458465576,
                                      1.1191012859344482, 1.1183180809020996};
    for (int k = 0; k < 10; k++) CHECK_NEAR(seed_sgd_step(&m, 0.01), losses[k], 1e-5);
    compare(m.g, m.W1, "seed_W1_after10.f32", SEED_H1 * SEED_IN, 1e-5, 1e-6);
    compare(m.g, m.W2, "seed_W2_after10.f32", SEED_H2 * SEED_H1, 1e-5, 1e-6);
    compare(m.g, m.W3, "seed_W3_after10.f32", SEED_OUT * SEED_H2, 1e-5, 1e-6);
    compare(m.g, m.b3, "seed_b3_after10.f32", SEED_OUT, 1e-5, 1e-6);
    OK(bp_graph_reset(m.g));
    loss = seed_forward(&m, NULL, NULL, NULL);
    OK(bp_tensor_item(m.g, loss, &l));
    CHECK_NEAR(l, 1.1175808906555176, 1e-5);

    OK(bp_graph_free(m.g));
    return bp_test_finish("seed_reference");
}
