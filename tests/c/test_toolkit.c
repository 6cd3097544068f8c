/* The training toolkit from C: models and their state_dict names, PyTorch's initialisation, losses,
 * optimizers, schedules, clipping, data sets and loaders, checkpoints (bit-identical resume, corrupt
 * and mismatched files refused with nothing changed), the compiled training step, and misuse of the
 * toolkit's objects. */
#include "bp_test.h"

static const char *CKPT = "test_toolkit_ckpt.safetensors";

/* 3 -> 4 tanh -> 2, parameters in graph g. */
static bp_model *small_model(bp_graph *g) {
    bp_model *m = NULL;
    OK(bp_model_new(&m));
    OK(bp_model_add_linear(m, g, NULL, 3, 4, true));
    OK(bp_model_add_layer(m, NULL, BP_LAYER_TANH, 0.0));
    OK(bp_model_add_linear(m, g, NULL, 4, 2, true));
    return m;
}

/* 12 rows of 3 features, labels 0/1. */
static bp_dataset *small_data(void) {
    float x[36];
    int64_t y[12];
    bp_dataset *d = NULL;
    int i;
    for (i = 0; i < 36; i++) x[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
    for (i = 0; i < 12; i++) y[i] = (x[3 * i] + x[3 * i + 1] > 0) ? 1 : 0;
    OK(bp_dataset_new(x, 36, y, 12, 3, &d));
    return d;
}

/* Copies every parameter's values into out (which holds at least 26 floats). */
static void read_params(bp_graph *g, bp_model *m, float *out) {
    bp_tensor p[4];
    size_t n = 0, i, k, at = 0;
    OK(bp_model_parameters(m, p, 4, &n));
    CHECK(n == 4);
    for (i = 0; i < n; i++) {
        OK(bp_tensor_numel(g, p[i], &k));
        OK(bp_tensor_read_f32(g, p[i], out + at, k));
        at += k;
    }
    CHECK(at == 26);
}

/* `steps` training steps of Adam + cross-entropy over the loader's batches (new epochs as needed). */
static void train(bp_graph *g, bp_model *m, bp_optimizer *opt, bp_loader *l, bp_dataset *d, int steps) {
    while (steps > 0) {
        bp_tensor x, y, out, loss;
        bool more = false;
        OK(bp_loader_next_batch(l, g, d, &x, &y, &more));
        if (!more) {
            OK(bp_loader_start_epoch(l));
            continue;
        }
        OK(bp_optimizer_zero_grad(opt, g));
        OK(bp_model_forward(m, g, x, &out));
        OK(bp_cross_entropy(g, out, y, &loss));
        OK(bp_backward(g, loss, NULL, false, false));
        OK(bp_optimizer_step(opt, g));
        OK(bp_graph_reset(g));
        steps--;
    }
}

static void test_names_and_pytorch_init(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_tensor p[4];
    size_t n = 0, size = 0;
    char name[32];
    float w[3], b[3];
    OK(bp_graph_new(&g));
    OK(bp_graph_manual_seed(g, 0));
    OK(bp_model_new(&m));
    OK(bp_model_add_linear(m, g, NULL, 64, 128, true));
    OK(bp_model_add_layer(m, NULL, BP_LAYER_RELU, 0.0));
    OK(bp_model_add_linear(m, g, "head", 128, 10, true));
    OK(bp_model_parameters(m, NULL, 0, &n));
    CHECK(n == 4);
    OK(bp_model_parameters(m, p, 4, &n));
    OK(bp_model_parameter_name(m, 0, NULL, 0, &size));
    CHECK(size == strlen("0.weight") + 1);
    OK(bp_model_parameter_name(m, 0, name, sizeof name, &size));
    CHECK(strcmp(name, "0.weight") == 0);
    OK(bp_model_parameter_name(m, 3, name, sizeof name, &size));
    CHECK(strcmp(name, "head.bias") == 0);
    FAILS(bp_model_parameter_name(m, 3, name, 4, &size), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_parameter_name(m, 4, name, sizeof name, &size), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_parameters(m, p, 3, &n), BP_ERR_INVALID_ARGUMENT);
    /* torch.manual_seed(0); nn.Linear(64, 128): weight[0, :3] and bias[:3], printed by PyTorch 2.15. */
    {
        float all_w[64 * 128], all_b[128];
        OK(bp_tensor_read_f32(g, p[0], all_w, 64 * 128));
        OK(bp_tensor_read_f32(g, p[1], all_b, 128));
        memcpy(w, all_w, sizeof w);
        memcpy(b, all_b, sizeof b);
    }
    CHECK(w[0] == -0.0009358525276184082f && w[1] == 0.06705544888973236f && w[2] == -0.10288064181804657f);
    CHECK(b[0] == -0.004167690873146057f && b[1] == 0.0553823858499527f && b[2] == 0.017652541399002075f);
    /* Names: unique, non-empty, no '.'; a refused layer adds no parameters. */
    FAILS(bp_model_add_linear(m, g, "head", 10, 2, true), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_add_linear(m, g, "a.b", 10, 2, true), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_add_layer(m, NULL, 99, 0.0), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_add_layer(m, NULL, BP_LAYER_DROPOUT, 1.5), BP_ERR_INVALID_ARGUMENT);
    OK(bp_model_parameters(m, NULL, 0, &n));
    CHECK(n == 4);
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_losses_and_predict(void) {
    bp_graph *g = NULL;
    bp_tensor a, t, l, logits, target, logp, out;
    float av[4] = {0.5f, 2.0f, -1.0f, 0.0f}, zero[4] = {0, 0, 0, 0};
    float lv[6] = {1, 2, 3, 1, 1, 1};
    int64_t cls[2] = {2, -100}, d1[1] = {4}, d2[2] = {2, 3}, d3[1] = {2};
    double v, acc;
    size_t nodes0, nodes1;
    bp_model *m;
    OK(bp_graph_new(&g));
    OK(bp_tensor_from_f32(g, av, 4, d1, 1, &a));
    OK(bp_tensor_from_f32(g, zero, 4, d1, 1, &t));
    OK(bp_l1_loss(g, a, t, BP_REDUCTION_MEAN, &l));
    OK(bp_tensor_item(g, l, &v));
    CHECK_NEAR(v, 3.5 / 4, 1e-7);
    /* beta 1: 0.125 + 1.5 + 0.5 + 0 */
    OK(bp_smooth_l1_loss(g, a, t, BP_REDUCTION_SUM, 1.0, &l));
    OK(bp_tensor_item(g, l, &v));
    CHECK_NEAR(v, 2.125, 1e-6);
    FAILS(bp_smooth_l1_loss(g, a, t, 7, 1.0, &l), BP_ERR_INVALID_ARGUMENT);
    /* nll over log_softmax with the second sample ignored: the mean is over the first only. */
    OK(bp_tensor_from_f32(g, lv, 6, d2, 2, &logits));
    OK(bp_tensor_from_i64(g, cls, 2, d3, 1, &target));
    OK(bp_log_softmax(g, logits, 1, &logp));
    OK(bp_nll_loss(g, logp, target, BP_REDUCTION_MEAN, -100, &l));
    OK(bp_tensor_item(g, l, &v));
    CHECK_NEAR(v, -(3.0 - log(exp(1.0) + exp(2.0) + exp(3.0))), 1e-6);
    cls[1] = 0;
    OK(bp_tensor_write_i64(g, target, cls, 2));
    OK(bp_accuracy(g, logits, target, &acc));
    CHECK_NEAR(acc, 1.0, 0); /* row 0: argmax 2; row 1: ties go to the first, 0 */
    /* predict records nothing, whatever the mode. */
    m = small_model(g);
    {
        float xv[6] = {1, 2, 3, 4, 5, 6};
        bp_tensor x;
        int64_t dx[2] = {2, 3};
        bool rg = true;
        OK(bp_tensor_from_f32(g, xv, 6, dx, 2, &x));
        OK(bp_graph_node_count(g, &nodes0));
        OK(bp_model_predict(m, g, x, &out));
        OK(bp_graph_node_count(g, &nodes1));
        CHECK(nodes0 == nodes1);
        OK(bp_tensor_requires_grad(g, out, &rg));
        CHECK(!rg);
        OK(bp_model_forward(m, g, x, &out));
        OK(bp_graph_node_count(g, &nodes1));
        CHECK(nodes1 > nodes0);
    }
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_schedule_and_clipping(void) {
    bp_graph *g = NULL;
    bp_model *m;
    bp_optimizer *opt = NULL;
    bp_schedule *s = NULL;
    bp_tensor p[4], x, y, out, loss;
    double lr = 0, norm = 0, after = 0;
    float xv[6] = {1, 2, 3, -1, -2, -3};
    int64_t yv[2] = {0, 1}, dx[2] = {2, 3}, dy[1] = {2};
    size_t n;
    int i;
    OK(bp_graph_new(&g));
    m = small_model(g);
    OK(bp_optimizer_new_sgd(g, m, 0.1, 0.9, 0.0, 0.0, false, &opt));
    OK(bp_schedule_new_step(opt, 2, 0.5, &s));
    for (i = 0; i < 4; i++) OK(bp_schedule_step(s, opt));
    OK(bp_optimizer_lr(opt, &lr));
    CHECK(lr == 0.1 * 0.5 * 0.5);
    OK(bp_schedule_free(s));
    s = NULL;
    FAILS(bp_schedule_new_step(opt, 0, 0.5, &s), BP_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    OK(bp_optimizer_set_lr(opt, 0.1));
    OK(bp_schedule_new_linear(opt, 0.25, 1.0, 4, &s));
    OK(bp_optimizer_lr(opt, &lr));
    CHECK(lr == 0.1 * 0.25); /* a warm-up's start factor applies at once, as in PyTorch */
    OK(bp_schedule_free(s));
    /* Clipping by norm brings the joint norm to max_norm. */
    OK(bp_tensor_from_f32(g, xv, 6, dx, 2, &x));
    OK(bp_tensor_from_i64(g, yv, 2, dy, 1, &y));
    OK(bp_model_forward(m, g, x, &out));
    OK(bp_cross_entropy(g, out, y, &loss));
    OK(bp_backward(g, loss, NULL, false, false));
    OK(bp_model_parameters(m, p, 4, &n));
    OK(bp_clip_grad_norm(g, p, n, 1e-3, 2.0, &norm));
    CHECK(norm > 1e-3);
    OK(bp_clip_grad_norm(g, p, n, 1e9, 2.0, &after));
    CHECK_NEAR(after, 1e-3, 1e-8);
    OK(bp_clip_grad_value(g, p, n, 1e-5));
    {
        bp_tensor gr;
        float v[12];
        OK(bp_grad(g, p[0], &gr));
        OK(bp_tensor_read_f32(g, gr, v, 12));
        for (i = 0; i < 12; i++) CHECK(fabsf(v[i]) <= 1e-5f);
    }
    FAILS(bp_clip_grad_norm(g, NULL, 2, 1.0, 2.0, NULL), BP_ERR_INVALID_ARGUMENT);
    OK(bp_optimizer_free(opt));
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_checkpoint_resume_is_bit_identical(void) {
    bp_graph *g = NULL;
    bp_model *m;
    bp_optimizer *opt = NULL;
    bp_schedule *s = NULL;
    bp_loader *l = NULL;
    bp_dataset *d = small_data();
    float straight[26], resumed[26], saved[26], now[26];
    FILE *f;
    long size;
    char *bytes;

    OK(bp_graph_new(&g));
    OK(bp_graph_manual_seed(g, 3));
    m = small_model(g);
    OK(bp_optimizer_new_adamw(g, m, 0.01, 0.9, 0.999, 1e-8, 0.01, false, &opt));
    OK(bp_schedule_new_exponential(opt, 0.9, &s));
    OK(bp_loader_new(12, 5, true, 7, &l));
    train(g, m, opt, l, d, 4); /* one epoch of 3 batches, then one into the next */
    OK(bp_checkpoint_save(CKPT, g, m, opt, s, l));
    read_params(g, m, saved);
    train(g, m, opt, l, d, 6);
    read_params(g, m, straight);

    OK(bp_checkpoint_load(CKPT, g, m, opt, s, l));
    read_params(g, m, now);
    CHECK(memcmp(now, saved, sizeof now) == 0);
    train(g, m, opt, l, d, 6);
    read_params(g, m, resumed);
    CHECK(memcmp(resumed, straight, sizeof resumed) == 0);

    /* A truncated file: BP_ERR_FORMAT, nothing changed. */
    f = fopen(CKPT, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    bytes = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    f = fopen(CKPT, "wb");
    fwrite(bytes, 1, (size_t)size - 3, f);
    fclose(f);
    FAILS(bp_checkpoint_load(CKPT, g, m, opt, s, l), BP_ERR_FORMAT);
    CHECK(strstr(bp_last_error_message(), "truncated") != NULL);
    read_params(g, m, now);
    CHECK(memcmp(now, resumed, sizeof now) == 0);
    free(bytes);

    /* A checkpoint of another architecture: BP_ERR_FORMAT naming the parameter. */
    {
        bp_graph *h = NULL;
        bp_model *other = NULL;
        OK(bp_graph_new(&h));
        OK(bp_model_new(&other));
        OK(bp_model_add_linear(other, h, NULL, 3, 5, true));
        OK(bp_checkpoint_save(CKPT, h, other, NULL, NULL, NULL));
        FAILS(bp_checkpoint_load(CKPT, g, m, NULL, NULL, NULL), BP_ERR_FORMAT);
        CHECK(strstr(bp_last_error_message(), "0.weight") != NULL);
        /* The weights round trip into a fresh model of the same architecture in another graph. */
        OK(bp_weights_save(CKPT, g, m));
        OK(bp_model_free(other));
        other = small_model(h);
        OK(bp_weights_load(CKPT, h, other));
        read_params(h, other, now);
        CHECK(memcmp(now, resumed, sizeof now) == 0);
        /* A weights file holds no optimizer state to resume from. */
        FAILS(bp_checkpoint_load(CKPT, g, m, opt, NULL, NULL), BP_ERR_FORMAT);
        OK(bp_model_free(other));
        OK(bp_graph_free(h));
    }
    FAILS(bp_checkpoint_save("/nonexistent-dir/x.safetensors", g, m, NULL, NULL, NULL), BP_ERR_IO);
    FAILS(bp_checkpoint_load("/nonexistent-dir/x.safetensors", g, m, NULL, NULL, NULL), BP_ERR_IO);
    remove(CKPT);
    OK(bp_loader_free(l));
    OK(bp_schedule_free(s));
    OK(bp_optimizer_free(opt));
    OK(bp_model_free(m));
    OK(bp_dataset_free(d));
    OK(bp_graph_free(g));
}

static void test_datasets_and_loader(void) {
    bp_dataset *d = small_data(), *tr = NULL, *te = NULL, *csv = NULL;
    bp_loader *l = NULL;
    bp_graph *g = NULL;
    size_t rows = 0, dim = 0, batches = 0, n, sizes[8], k = 0;
    size_t test_rows[3] = {0, 5, 11}, twice[2] = {1, 1};
    double mean[3], std[3];
    bool more = true;
    FILE *f;
    OK(bp_graph_new(&g));
    OK(bp_dataset_split(d, test_rows, 3, &tr, &te));
    OK(bp_dataset_size(tr, &rows, &dim));
    CHECK(rows == 9 && dim == 3);
    OK(bp_dataset_size(te, &rows, NULL));
    CHECK(rows == 3);
    FAILS(bp_dataset_split(d, twice, 2, &tr, &te), BP_ERR_INVALID_ARGUMENT);
    OK(bp_dataset_column_stats(tr, mean, std, 3));
    OK(bp_dataset_standardize(tr, mean, std, 3));
    OK(bp_dataset_column_stats(tr, mean, std, 3));
    CHECK_NEAR(mean[0], 0.0, 1e-6);
    CHECK_NEAR(std[1], 1.0, 1e-6);
    FAILS(bp_dataset_column_stats(tr, mean, std, 2), BP_ERR_INVALID_ARGUMENT);
    /* Batches of 4 over 9 rows: 4, 4, 1 (the last partial batch kept), then 4, 4 when dropped. */
    OK(bp_loader_new(9, 4, true, 0, &l));
    OK(bp_loader_start_epoch(l));
    for (;;) {
        bp_tensor x, y;
        OK(bp_loader_next_batch(l, g, tr, &x, &y, &more));
        if (!more) break;
        OK(bp_tensor_numel(g, y, &n));
        sizes[k++] = n;
    }
    CHECK(k == 3 && sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 1);
    OK(bp_loader_set_drop_last(l, true));
    OK(bp_loader_batches_per_epoch(l, &batches));
    CHECK(batches == 2);
    {
        bp_tensor x, y;
        FAILS(bp_loader_next_batch(l, g, d, &x, &y, &more), BP_ERR_INVALID_ARGUMENT); /* 12 rows, not 9 */
    }
    FAILS(bp_loader_new(9, 0, true, 0, &l), BP_ERR_INVALID_ARGUMENT);
    OK(bp_loader_free(l));
    /* CSV: a ragged row is refused with its line number; a missing file is an I/O error. */
    f = fopen("test_toolkit.csv", "w");
    fputs("1,2,0\n3,4,1\n5,6\n", f);
    fclose(f);
    FAILS(bp_dataset_load_csv("test_toolkit.csv", -1, false, &csv), BP_ERR_FORMAT);
    CHECK(strstr(bp_last_error_message(), "line 3") != NULL);
    CHECK(csv == NULL);
    f = fopen("test_toolkit.csv", "w");
    fputs("a,b,label\n1,2,0\n3,4,1\n", f);
    fclose(f);
    OK(bp_dataset_load_csv("test_toolkit.csv", -1, true, &csv));
    OK(bp_dataset_size(csv, &rows, &dim));
    CHECK(rows == 2 && dim == 2);
    remove("test_toolkit.csv");
    FAILS(bp_dataset_load_csv("no-such-file.csv", -1, false, &csv), BP_ERR_IO);
    OK(bp_dataset_free(csv));
    OK(bp_dataset_free(tr));
    OK(bp_dataset_free(te));
    OK(bp_dataset_free(d));
    OK(bp_graph_free(g));
}

/* bp_model_train_step_cross_entropy and _mse are the step built from ops, bit for bit, and refuses what it
 * does not take without touching the parameters. */
static void test_train_step_matches_the_step_from_ops(void) {
    bp_graph *ga = NULL, *gb = NULL;
    bp_model *ma, *mb, *drop = NULL;
    bp_optimizer *oa = NULL, *ob = NULL, *og = NULL;
    bp_tensor xa, ya, xb, yb, y7, stale, ta, tb;
    float x[36], pa[26], pb[26], before[26];
    int64_t y[12], dims[2] = {12, 3}, dims2[2] = {12, 2}, dims7[1] = {7};
    double la = 0, lb = 0, l = 0;
    int i, step;
    for (i = 0; i < 36; i++) x[i] = (float)((i * 5) % 13) / 4.0f - 1.5f;
    for (i = 0; i < 12; i++) y[i] = i % 2;
    OK(bp_graph_new(&ga));
    OK(bp_graph_new(&gb));
    OK(bp_graph_manual_seed(ga, 3));
    OK(bp_graph_manual_seed(gb, 3));
    ma = small_model(ga);
    mb = small_model(gb);
    OK(bp_optimizer_new_sgd(ga, ma, 0.1, 0.9, 0.0, 0.0, false, &oa));
    OK(bp_optimizer_new_sgd(gb, mb, 0.1, 0.9, 0.0, 0.0, false, &ob));
    OK(bp_tensor_from_f32(ga, x, 36, dims, 2, &xa));
    OK(bp_tensor_from_i64(ga, y, 12, dims, 1, &ya));
    OK(bp_tensor_from_f32(gb, x, 36, dims, 2, &xb));
    OK(bp_tensor_from_i64(gb, y, 12, dims, 1, &yb));
    OK(bp_tensor_set_persistent(ga, xa, true));
    OK(bp_tensor_set_persistent(ga, ya, true));
    for (step = 0; step < 5; step++) {
        bp_tensor out, loss;
        size_t nodes = 1;
        OK(bp_optimizer_zero_grad(oa, ga));
        OK(bp_model_forward(ma, ga, xa, &out));
        OK(bp_cross_entropy_ex(ga, out, ya, BP_REDUCTION_MEAN, 0.05, -100, &loss));
        OK(bp_tensor_item(ga, loss, &la));
        OK(bp_backward(ga, loss, NULL, false, false));
        OK(bp_optimizer_step(oa, ga));
        OK(bp_graph_reset(ga));
        OK(bp_model_train_step_cross_entropy(mb, gb, ob, xb, yb, BP_REDUCTION_MEAN, 0.05, -100, &lb));
        CHECK(memcmp(&la, &lb, sizeof la) == 0);
        OK(bp_graph_node_count(gb, &nodes));
        CHECK(nodes == 0);
    }
    read_params(ga, ma, pa);
    read_params(gb, mb, pb);
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    /* Then mean squared error against float targets of the output's shape, continuing both. */
    OK(bp_tensor_from_f32(ga, x, 24, dims2, 2, &ta));
    OK(bp_tensor_from_f32(gb, x, 24, dims2, 2, &tb));
    OK(bp_tensor_set_persistent(ga, ta, true));
    for (step = 0; step < 3; step++) {
        bp_tensor out, loss;
        OK(bp_optimizer_zero_grad(oa, ga));
        OK(bp_model_forward(ma, ga, xa, &out));
        OK(bp_mse_loss(ga, out, ta, BP_REDUCTION_SUM, &loss));
        OK(bp_tensor_item(ga, loss, &la));
        OK(bp_backward(ga, loss, NULL, false, false));
        OK(bp_optimizer_step(oa, ga));
        OK(bp_graph_reset(ga));
        OK(bp_model_train_step_mse(mb, gb, ob, xb, tb, BP_REDUCTION_SUM, &lb));
        CHECK(memcmp(&la, &lb, sizeof la) == 0);
    }
    read_params(ga, ma, pa);
    read_params(gb, mb, pb);
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    FAILS(bp_model_train_step_mse(mb, gb, ob, xb, yb, BP_REDUCTION_MEAN, &l), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_model_train_step_mse(mb, gb, ob, xb, tb, BP_REDUCTION_NONE, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_mse(mb, gb, ob, xb, tb, -1, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_mse(mb, gb, ob, xb, tb, BP_REDUCTION_MEAN, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_mse(mb, gb, NULL, xb, tb, BP_REDUCTION_MEAN, &l), BP_ERR_INVALID_ARGUMENT);
    read_params(gb, mb, pb);

    /* Error paths: each leaves the parameters as they were. */
    FAILS(bp_model_train_step_cross_entropy(NULL, gb, ob, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, NULL, ob, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, NULL, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, yb, BP_REDUCTION_NONE, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, yb, 7, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, yb, BP_REDUCTION_MEAN, 2.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, (bp_optimizer *)(void *)mb, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_HANDLE);
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, yb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_DTYPE);
    OK(bp_tensor_from_i64(gb, y, 7, dims7, 1, &y7));
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, y7, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_SHAPE_MISMATCH);
    y[0] = 5; /* out of range for 2 classes */
    OK(bp_tensor_from_i64(gb, y, 12, dims, 1, &stale));
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, stale, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_ARGUMENT);
    OK(bp_tensor_free(gb, stale));
    FAILS(bp_model_train_step_cross_entropy(mb, gb, ob, xb, stale, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_HANDLE);
    FAILS(bp_model_train_step_cross_entropy(mb, ga, ob, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_INVALID_HANDLE);
    /* A layer the compiled step does not take. */
    OK(bp_model_new(&drop)); /* dropout in training mode draws random masks: not compiled */
    OK(bp_model_add_linear(drop, gb, NULL, 3, 2, true));
    OK(bp_model_add_layer(drop, NULL, BP_LAYER_DROPOUT, 0.5));
    OK(bp_optimizer_new_sgd(gb, drop, 0.1, 0.0, 0.0, 0.0, false, &og));
    FAILS(bp_model_train_step_cross_entropy(drop, gb, og, xb, yb, BP_REDUCTION_MEAN, 0.0, -100, &l), BP_ERR_UNSUPPORTED);
    read_params(gb, mb, before);
    CHECK(memcmp(before, pb, sizeof pb) == 0);

    OK(bp_optimizer_free(og));
    OK(bp_model_free(drop));
    OK(bp_optimizer_free(oa));
    OK(bp_optimizer_free(ob));
    OK(bp_model_free(ma));
    OK(bp_model_free(mb));
    OK(bp_graph_free(ga));
    OK(bp_graph_free(gb));
}

static void test_object_misuse(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_optimizer *opt = NULL;
    bool training;
    OK(bp_graph_new(&g));
    FAILS(bp_model_new(NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_model_set_training(NULL, true), BP_ERR_INVALID_ARGUMENT);
    OK(bp_model_free(NULL));
    OK(bp_optimizer_free(NULL));
    OK(bp_schedule_free(NULL));
    OK(bp_dataset_free(NULL));
    OK(bp_loader_free(NULL));
    m = small_model(g);
    OK(bp_model_is_training(m, &training));
    CHECK(training);
    /* A pointer of another type is recognised as such. */
    FAILS(bp_optimizer_step((bp_optimizer *)(void *)m, g), BP_ERR_INVALID_HANDLE);
    OK(bp_optimizer_new_sgd(g, m, 0.1, 0.0, 0.0, 0.0, false, &opt));
    FAILS(bp_optimizer_new_sgd(g, m, -1.0, 0.0, 0.0, 0.0, false, &opt), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_optimizer_new_sgd(g, m, 0.1, 0.0, 0.5, 0.0, true, &opt), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_optimizer_set_lr(opt, -0.5), BP_ERR_INVALID_ARGUMENT);
    /* Use after free and double free are detected. */
    OK(bp_model_free(m));
    FAILS(bp_model_set_training(m, true), BP_ERR_INVALID_HANDLE);
    FAILS(bp_model_free(m), BP_ERR_INVALID_HANDLE);
    OK(bp_optimizer_free(opt));
    FAILS(bp_optimizer_step(opt, g), BP_ERR_INVALID_HANDLE);
    /* A model whose graph was freed: its parameters are stale handles. */
    {
        bp_graph *h = NULL;
        bp_tensor x, out;
        float xv[3] = {1, 2, 3};
        int64_t dx[2] = {1, 3};
        OK(bp_graph_new(&h));
        m = small_model(h);
        OK(bp_graph_free(h));
        OK(bp_tensor_from_f32(g, xv, 3, dx, 2, &x));
        FAILS(bp_model_forward(m, g, x, &out), BP_ERR_INVALID_HANDLE);
        OK(bp_model_free(m));
    }
    OK(bp_graph_free(g));
}

int main(void) {
    test_names_and_pytorch_init();
    test_losses_and_predict();
    test_schedule_and_clipping();
    test_checkpoint_resume_is_bit_identical();
    test_datasets_and_loader();
    test_train_step_matches_the_step_from_ops();
    test_object_misuse();
    return bp_test_finish("test_toolkit");
}
