/* The main job from C: an MLP trained on the UCI optical-digits data set (workload D), the same recipe
 * as examples/digits.rs and PyTorch's shared/bench/torch_digits.py:
 *   64 -> 128 ReLU -> 10, Adam lr 1e-3, batch 32 reshuffled every epoch (last partial batch kept),
 *   30 epochs, inputs standardised with the training set's statistics, the 360 rows listed in
 *   digits_test_rows.txt held out as the test set.
 * Prints one line per epoch (epoch, loss, train and test accuracy, samples per second), the training
 * time, and saves a checkpoint. Exits with 1 when the test accuracy is below 97%.
 *
 * Usage: digits DATA_DIR [CHECKPOINT_PATH [EPOCHS]]   (DATA_DIR holds digits.csv and digits_test_rows.txt)
 * EPOCHS defaults to the recipe's 30; the 97% requirement applies only then (a shorter run, as the
 * valgrind pass uses, checks the mechanics).
 * Build: cc digits.c $(pkg-config --cflags --libs bp) */
#define _POSIX_C_SOURCE 199309L
#include <bp.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TRY(call)                                                                                    \
    do {                                                                                             \
        bp_status s_ = (call);                                                                       \
        if (s_ != BP_OK) {                                                                           \
            fprintf(stderr, "%s failed: %s: %s\n", #call, bp_status_name(s_), bp_last_error_message()); \
            goto fail;                                                                               \
        }                                                                                            \
    } while (0)

enum { EPOCHS = 30, BATCH = 32, HIDDEN = 128, CLASSES = 10, MAX_ROWS = 4096 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Accuracy of the model on a whole data set (inference: no graph recorded). */
static bp_status evaluate(bp_graph *g, bp_model *model, bp_dataset *data, double *acc) {
    bp_tensor x, y, logits;
    bp_status s = bp_dataset_to_tensors(data, g, &x, &y);
    if (s == BP_OK) s = bp_model_predict(model, g, x, &logits);
    if (s == BP_OK) s = bp_accuracy(g, logits, y, acc);
    if (s == BP_OK) s = bp_tensor_free(g, x);
    if (s == BP_OK) s = bp_tensor_free(g, y);
    if (s == BP_OK) s = bp_tensor_free(g, logits);
    return s;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/digits";
    const char *ckpt = argc > 2 ? argv[2] : "digits_c.safetensors";
    char path[4096];
    static size_t test_rows[MAX_ROWS];
    size_t n_test = 0, n_train = 0, dim = 0, batches = 0;
    double *mean = NULL, *std = NULL, train_seconds = 0, test_acc = 0;
    int rc = 1, epoch, epochs = argc > 3 ? atoi(argv[3]) : EPOCHS;
    FILE *f;
    bp_dataset *all = NULL, *train = NULL, *test = NULL;
    bp_graph *g = NULL;
    bp_model *model = NULL;
    bp_optimizer *opt = NULL;
    bp_loader *loader = NULL;

    if (epochs < 1) {
        fprintf(stderr, "EPOCHS must be a positive number\n");
        return 1;
    }
    snprintf(path, sizeof path, "%s/digits_test_rows.txt", dir);
    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    while (n_test < MAX_ROWS && fscanf(f, "%zu", &test_rows[n_test]) == 1) n_test++;
    fclose(f);

    snprintf(path, sizeof path, "%s/digits.csv", dir);
    TRY(bp_dataset_load_csv(path, -1, false, &all));
    TRY(bp_dataset_split(all, test_rows, n_test, &train, &test));
    TRY(bp_dataset_size(train, &n_train, &dim));
    mean = malloc(dim * sizeof *mean);
    std = malloc(dim * sizeof *std);
    if (!mean || !std) goto fail;
    TRY(bp_dataset_column_stats(train, mean, std, dim));
    TRY(bp_dataset_standardize(train, mean, std, dim));
    TRY(bp_dataset_standardize(test, mean, std, dim));
    printf("digits: %zu training rows, %zu test rows, %zu features\n", n_train, n_test, dim);

    TRY(bp_graph_new(&g));
    TRY(bp_graph_manual_seed(g, 0));
    TRY(bp_model_new(&model));
    TRY(bp_model_add_linear(model, g, NULL, dim, HIDDEN, true));
    TRY(bp_model_add_layer(model, NULL, BP_LAYER_RELU, 0.0));
    TRY(bp_model_add_linear(model, g, NULL, HIDDEN, CLASSES, true));
    TRY(bp_optimizer_new_adam(g, model, 1e-3, 0.9, 0.999, 1e-8, 0.0, false, &opt));
    TRY(bp_loader_new(n_train, BATCH, true, 0, &loader));
    TRY(bp_loader_batches_per_epoch(loader, &batches));

    for (epoch = 1; epoch <= epochs; epoch++) {
        double t0, dt, loss_sum = 0, train_acc = 0;
        size_t seen = 0;
        bool more = true;
        TRY(bp_model_set_training(model, true));
        t0 = now();
        TRY(bp_loader_start_epoch(loader));
        for (;;) {
            bp_tensor x, y, logits, loss;
            size_t b = 0;
            double l;
            TRY(bp_loader_next_batch(loader, g, train, &x, &y, &more));
            if (!more) break;
            TRY(bp_optimizer_zero_grad(opt, g));
            TRY(bp_model_forward(model, g, x, &logits));
            TRY(bp_cross_entropy(g, logits, y, &loss));
            TRY(bp_backward(g, loss, NULL, false, false));
            TRY(bp_optimizer_step(opt, g));
            TRY(bp_tensor_item(g, loss, &l));
            TRY(bp_tensor_numel(g, y, &b));
            loss_sum += l * (double)b;
            seen += b;
            TRY(bp_graph_reset(g));
        }
        dt = now() - t0;
        train_seconds += dt;
        TRY(bp_model_set_training(model, false));
        TRY(evaluate(g, model, train, &train_acc));
        TRY(evaluate(g, model, test, &test_acc));
        printf("epoch %2d  loss %.4f  train acc %6.2f%%  test acc %6.2f%%  %8.0f samples/s\n", epoch,
               loss_sum / (double)seen, 100.0 * train_acc, 100.0 * test_acc, (double)seen / dt);
    }
    printf("training time %.3f s (%d epochs, %zu steps)\n", train_seconds, epochs, (size_t)epochs * batches);
    printf("final test accuracy %.2f%%\n", 100.0 * test_acc);
    TRY(bp_checkpoint_save(ckpt, g, model, opt, NULL, loader));
    printf("checkpoint saved to %s\n", ckpt);
    if (epochs == EPOCHS && test_acc < 0.97) {
        fprintf(stderr, "test accuracy %.2f%% is below 97%%\n", 100.0 * test_acc);
    } else {
        rc = 0;
    }

fail:
    bp_loader_free(loader);
    bp_optimizer_free(opt);
    bp_model_free(model);
    bp_graph_free(g);
    bp_dataset_free(test);
    bp_dataset_free(train);
    bp_dataset_free(all);
    free(mean);
    free(std);
    return rc;
}
