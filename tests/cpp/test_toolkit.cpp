// The training toolkit through bp.hpp: Dataset, Loader, Model, Optimizer, Schedule (all move-only
// owners), the toolkit's losses, init, clipping and checkpoints, with their error paths.
#include "bp_cpp_test.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using bp_test::expect_error;
using bp_test::expect_near;

template <typename T>
constexpr bool move_only = !std::is_copy_constructible<T>::value && !std::is_copy_assignable<T>::value &&
                           std::is_nothrow_move_constructible<T>::value && std::is_nothrow_move_assignable<T>::value;
static_assert(move_only<bp::Dataset> && move_only<bp::Loader> && move_only<bp::Model> && move_only<bp::Optimizer> &&
                  move_only<bp::Schedule>,
              "the toolkit's owners are move-only");

// 12 rows of 3 features, labels 0/1 (as tests/c/test_toolkit.c).
bp::Dataset small_data() {
    std::vector<float> x(36);
    std::vector<std::int64_t> y(12);
    for (int i = 0; i < 36; i++) x[i] = static_cast<float>((i * 7) % 11) / 5.0f - 1.0f;
    for (int i = 0; i < 12; i++) y[i] = (x[3 * i] + x[3 * i + 1] > 0) ? 1 : 0;
    return bp::Dataset(x, y, 3);
}

// 3 -> 4 tanh -> 2.
bp::Model small_model(bp::Graph &g) {
    bp::Model m;
    m.add_linear(g, 3, 4).add(bp::Layer::tanh).add_linear(g, 4, 2);
    return m;
}

std::vector<float> flat_params(const bp::Model &m) {
    std::vector<float> all;
    for (const bp::Tensor &p : m.parameters()) {
        std::vector<float> v = p.to_vector<float>();
        all.insert(all.end(), v.begin(), v.end());
    }
    return all;
}

// `steps` steps of cross-entropy training over the loader's batches, new epochs as needed.
void train(bp::Graph &g, bp::Model &m, bp::Optimizer &opt, bp::Loader &loader, const bp::Dataset &data, int steps) {
    while (steps > 0) {
        std::optional<bp::Batch> batch = loader.next_batch(g, data);
        if (!batch) {
            loader.start_epoch();
            continue;
        }
        opt.zero_grad();
        bp::cross_entropy(m(batch->x), batch->y).backward();
        opt.step();
        g.reset();
        steps--;
    }
}

std::string temp_path(const char *name) { return std::string(::testing::TempDir()) + name; }

// Move assignment frees the object it replaces; release() hands the C pointer over; a moved-from
// owner is empty and its destructor does nothing.
TEST(Owners, move_assignment_and_release_for_every_toolkit_type) {
    bp::Graph g;
    bp::Dataset d = small_data();
    d = bp::Dataset(std::vector<float>{1, 2}, std::vector<std::int64_t>{0, 1}, 1);
    EXPECT_EQ(d.rows(), 2u);
    bp::Dataset adopted(d.release());
    EXPECT_EQ(d.get(), nullptr);
    EXPECT_EQ(adopted.rows(), 2u);

    bp::Loader l(4, 2);
    l = bp::Loader(6, 2);
    EXPECT_EQ(l.batches_per_epoch(), 3u);
    EXPECT_EQ(bp_loader_free(l.release()), BP_OK);

    bp::Model m = small_model(g), m2;
    m2 = std::move(m);
    EXPECT_EQ(m.get(), nullptr);
    EXPECT_EQ(m2.parameters().size(), 4u);

    bp::Optimizer o = bp::Optimizer::sgd(g, m2, 0.1);
    o = bp::Optimizer::sgd(g, m2, 0.2);
    EXPECT_EQ(o.lr(), 0.2);
    bp::Schedule s = bp::Schedule::exponential_lr(o, 0.5);
    s = bp::Schedule::exponential_lr(o, 0.25);
    s.step();
    EXPECT_DOUBLE_EQ(o.lr(), 0.05);
    EXPECT_EQ(bp_schedule_free(s.release()), BP_OK);
    EXPECT_EQ(bp_optimizer_free(o.release()), BP_OK);
    EXPECT_EQ(bp_model_free(m2.release()), BP_OK);
}

TEST(Model, names_parameters_as_pytorch_and_initialises_as_pytorch) {
    bp::Graph g;
    g.manual_seed(0);
    bp::Model m;
    m.add_linear(g, 64, 128).add(bp::Layer::relu).add_linear(g, 128, 10, true, "head");
    EXPECT_EQ(m.parameter_names(), (std::vector<std::string>{"0.weight", "0.bias", "head.weight", "head.bias"}));
    EXPECT_EQ(m.parameter_name(2), "head.weight");
    std::vector<bp::Tensor> p = m.parameters();
    ASSERT_EQ(p.size(), 4u);
    EXPECT_EQ(p[0].shape(), (bp::Shape{128, 64}));
    EXPECT_TRUE(p[0].requires_grad());
    EXPECT_TRUE(p[0].is_persistent());
    EXPECT_EQ(m.graph(), g.get());
    // torch.manual_seed(0); nn.Linear(64, 128): weight[0, :3] and bias[:3], as printed by PyTorch.
    std::vector<float> w = p[0].to_vector<float>(), b = p[1].to_vector<float>();
    EXPECT_EQ(w[0], -0.0009358525276184082f);
    EXPECT_EQ(w[1], 0.06705544888973236f);
    EXPECT_EQ(b[0], -0.004167690873146057f);
    expect_error(bp::Status::invalid_argument, [&] { m.add_linear(g, 10, 2, true, "head"); });
    expect_error(bp::Status::invalid_argument, [&] { m.add_linear(g, 10, 2, true, "a.b"); });
    expect_error(bp::Status::invalid_argument, [&] { m.add(bp::Layer::dropout, 1.5); });
    expect_error(bp::Status::invalid_argument, [&] { m.add(static_cast<bp::Layer>(99)); });
    expect_error(bp::Status::invalid_argument, [&] { m.parameter_name(4); });
    EXPECT_EQ(m.parameters().size(), 4u);
}

TEST(Model, every_layer_kind_runs_and_modes_switch) {
    bp::Graph g;
    bp::Model m;
    m.add_embedding(g, 10, 4, "emb")
        .add_layer_norm(g, {4}, 1e-5, true, "norm")
        .add(bp::Layer::leaky_relu, 0.1)
        .add(bp::Layer::gelu)
        .add(bp::Layer::sigmoid)
        .add(bp::Layer::dropout, 0.5)
        .add(bp::Layer::flatten)
        .add_linear(g, 12, 2)
        .add(bp::Layer::relu);
    EXPECT_EQ(m.parameter_names(), (std::vector<std::string>{"emb.weight", "norm.weight", "norm.bias", "7.weight", "7.bias"}));
    bp::Tensor idx = g.tensor(std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
    EXPECT_TRUE(m.is_training());
    bp::Tensor out = m(idx);
    EXPECT_EQ(out.shape(), (bp::Shape{2, 2}));
    EXPECT_TRUE(out.requires_grad());
    m.eval();
    EXPECT_FALSE(m.is_training());
    bp::Tensor a = m.forward(idx), b = m.predict(idx);
    EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
    EXPECT_FALSE(b.requires_grad());
    m.train();
    EXPECT_TRUE(m.is_training());
    bp::sum(m(idx)).backward();
    EXPECT_FALSE(m.parameters()[0].grad().is_null());
    m.zero_grad();
    for (const bp::Tensor &p : m.parameters()) EXPECT_TRUE(p.grad().is_null());
}

TEST(Dataset, splits_standardizes_and_makes_tensors) {
    bp::Dataset d = small_data();
    EXPECT_EQ(d.rows(), 12u);
    EXPECT_EQ(d.dim(), 3u);
    auto [train_set, test_set] = d.split({0, 5});
    EXPECT_EQ(train_set.rows(), 10u);
    EXPECT_EQ(test_set.rows(), 2u);
    bp::ColumnStats stats = train_set.column_stats();
    ASSERT_EQ(stats.mean.size(), 3u);
    train_set.standardize(stats);
    bp::ColumnStats after = train_set.column_stats();
    for (std::size_t c = 0; c < 3; c++) {
        EXPECT_NEAR(after.mean[c], 0.0, 1e-6);
        EXPECT_NEAR(after.std[c], 1.0, 1e-5);
    }
    bp::Graph g;
    bp::Batch all = test_set.to_tensors(g);
    EXPECT_EQ(all.x.shape(), (bp::Shape{2, 3}));
    EXPECT_EQ(all.y.dtype(), bp::DType::i64);
    expect_error(bp::Status::invalid_argument, [&] { d.split({1, 1}); });
    expect_error(bp::Status::invalid_argument, [&] { train_set.standardize({{0, 0}, {1, 1}}); });
    expect_error(bp::Status::invalid_argument, [&] { train_set.standardize({{0, 0}, {1}}); });
    expect_error(bp::Status::invalid_argument, [&] { bp::Dataset(std::vector<float>(5), std::vector<std::int64_t>(2), 3); });
}

TEST(Dataset, csv_files_load_and_bad_ones_are_format_or_io_errors) {
    const std::string good = temp_path("bp_cpp_good.csv"), bad = temp_path("bp_cpp_bad.csv");
    std::ofstream(good) << "a,b,label\n1,2,0\n3,4,1\n";
    std::ofstream(bad) << "1,2,0\n3,x,1\n";
    bp::Dataset d = bp::Dataset::load_csv(good, -1, true);
    EXPECT_EQ(d.rows(), 2u);
    EXPECT_EQ(d.dim(), 2u);
    std::string msg = expect_error(bp::Status::format, [&] { bp::Dataset::load_csv(bad); });
    EXPECT_NE(msg.find("bp_cpp_bad.csv"), std::string::npos) << msg;
    expect_error(bp::Status::io, [&] { bp::Dataset::load_csv(temp_path("bp_cpp_no_such_file.csv")); });
    std::remove(good.c_str());
    std::remove(bad.c_str());
}

TEST(Loader, visits_every_row_once_per_epoch_in_batches) {
    bp::Dataset d = small_data();
    bp::Graph g;
    bp::Loader loader(12, 5, true, 7);
    EXPECT_EQ(loader.batches_per_epoch(), 3u);
    loader.start_epoch();
    std::size_t rows = 0, batches = 0;
    while (auto batch = loader.next_batch(g, d)) {
        rows += batch->y.numel();
        batches++;
    }
    EXPECT_EQ(rows, 12u);
    EXPECT_EQ(batches, 3u);
    loader.set_drop_last(true);
    EXPECT_EQ(loader.batches_per_epoch(), 2u);
    bp::Loader wrong(9, 3, false, 0);
    wrong.start_epoch();
    expect_error(bp::Status::invalid_argument, [&] { wrong.next_batch(g, d); });
    expect_error(bp::Status::invalid_argument, [&] { bp::Loader(9, 0); });
}

TEST(Optimizer, every_optimizer_lowers_the_loss) {
    struct Case {
        const char *name;
        bp::Optimizer (*make)(bp::Graph &, bp::Model &);
    };
    const Case cases[] = {
        {"sgd", [](bp::Graph &g, bp::Model &m) { return bp::Optimizer::sgd(g, m, 0.5, {0.9, 0.0, 1e-4, true}); }},
        {"adam", [](bp::Graph &g, bp::Model &m) { return bp::Optimizer::adam(g, m, 0.05); }},
        {"adamw", [](bp::Graph &g, bp::Model &m) { return bp::Optimizer::adamw(g, m, 0.05, 1e-2, {0.9, 0.999, 1e-8, 0.0, true}); }},
        {"rmsprop", [](bp::Graph &g, bp::Model &m) { return bp::Optimizer::rmsprop(g, m, 0.01); }},
    };
    bp::Dataset d = small_data();
    for (const Case &c : cases) {
        SCOPED_TRACE(c.name);
        bp::Graph g;
        g.manual_seed(1);
        bp::Model m = small_model(g);
        bp::Optimizer opt = c.make(g, m);
        bp::Batch all = d.to_tensors(g);
        all.x.set_persistent();
        all.y.set_persistent();
        const double before = bp::cross_entropy(m(all.x), all.y).item();
        for (int i = 0; i < 30; i++) {
            opt.zero_grad();
            g.reset();
            bp::cross_entropy(m(all.x), all.y).backward();
            opt.step();
        }
        g.reset();
        EXPECT_LT(bp::cross_entropy(m(all.x), all.y).item(), before);
    }
}

// bp::train_step and bp::train_step_mse are the step built from ops, bit for bit; unsupported layers throw.
TEST(Optimizer, train_step_is_the_step_built_from_ops) {
    bp::Dataset d = small_data();
    bp::Graph ga, gb;
    ga.manual_seed(5);
    gb.manual_seed(5);
    bp::Model ma = small_model(ga), mb = small_model(gb);
    bp::Optimizer oa = bp::Optimizer::adam(ga, ma, 0.05), ob = bp::Optimizer::adam(gb, mb, 0.05);
    bp::Batch a = d.to_tensors(ga), b = d.to_tensors(gb);
    a.x.set_persistent();
    a.y.set_persistent();
    for (int i = 0; i < 5; i++) {
        oa.zero_grad();
        bp::Tensor loss = bp::cross_entropy(ma(a.x), a.y, bp::Reduction::sum, 0.1);
        const double la = loss.item();
        loss.backward();
        oa.step();
        ga.reset();
        const double lb = bp::train_step(mb, ob, b.x, b.y, bp::Reduction::sum, 0.1);
        EXPECT_EQ(la, lb) << "step " << i;
    }
    EXPECT_EQ(flat_params(ma), flat_params(mb));
    // Mean squared error, continuing both.
    std::vector<float> values(24);
    for (int i = 0; i < 24; i++) values[i] = static_cast<float>(i % 5) / 4.0f;
    bp::Tensor ta = ga.tensor(values, {12, 2}), tb = gb.tensor(values, {12, 2});
    ta.set_persistent();
    for (int i = 0; i < 3; i++) {
        oa.zero_grad();
        bp::Tensor loss = bp::mse_loss(ma(a.x), ta);
        const double la = loss.item();
        loss.backward();
        oa.step();
        ga.reset();
        EXPECT_EQ(la, bp::train_step_mse(mb, ob, b.x, tb)) << "mse step " << i;
    }
    EXPECT_EQ(flat_params(ma), flat_params(mb));
    expect_error(bp::Status::shape_mismatch, [&] { bp::train_step_mse(mb, ob, b.x, b.y); });
    bp::Model drop;  // dropout in training mode draws random masks: not compiled
    drop.add_linear(gb, 3, 2).add(bp::Layer::dropout, 0.5);
    bp::Optimizer og = bp::Optimizer::sgd(gb, drop, 0.1);
    expect_error(bp::Status::unsupported, [&] { bp::train_step(drop, og, b.x, b.y); });
    expect_error(bp::Status::invalid_argument, [&] { bp::train_step(mb, ob, b.x, b.y, bp::Reduction::none); });
}

TEST(Optimizer, learning_rate_and_bad_hyperparameters) {
    bp::Graph g;
    bp::Model m = small_model(g);
    bp::Optimizer opt = bp::Optimizer::sgd(g, m, 0.1);
    EXPECT_EQ(opt.lr(), 0.1);
    opt.set_lr(0.25);
    EXPECT_EQ(opt.lr(), 0.25);
    expect_error(bp::Status::invalid_argument, [&] { opt.set_lr(-0.5); });
    expect_error(bp::Status::invalid_argument, [&] { bp::Optimizer::sgd(g, m, -1.0); });
    expect_error(bp::Status::invalid_argument, [&] { bp::Optimizer::sgd(g, m, 0.1, {0.0, 0.5, 0.0, true}); });
    bp::Optimizer moved = std::move(opt);
    EXPECT_EQ(opt.get(), nullptr);
    EXPECT_EQ(moved.lr(), 0.25);
}

TEST(Schedule, each_schedule_sets_the_learning_rate_as_pytorch) {
    bp::Graph g;
    bp::Model m = small_model(g);
    bp::Optimizer opt = bp::Optimizer::sgd(g, m, 0.1);
    {
        bp::Schedule s = bp::Schedule::step_lr(opt, 2, 0.5);
        for (int i = 0; i < 4; i++) s.step();
        EXPECT_DOUBLE_EQ(opt.lr(), 0.1 * 0.5 * 0.5);
    }
    opt.set_lr(0.1);
    {
        bp::Schedule s = bp::Schedule::exponential_lr(opt, 0.5);
        s.step();
        EXPECT_DOUBLE_EQ(opt.lr(), 0.05);
    }
    opt.set_lr(0.1);
    {
        bp::Schedule s = bp::Schedule::cosine_annealing_lr(opt, 2, 0.0);
        s.step();
        EXPECT_NEAR(opt.lr(), 0.05, 1e-12);
        s.step();
        EXPECT_NEAR(opt.lr(), 0.0, 1e-12);
    }
    opt.set_lr(0.1);
    {
        bp::Schedule s = bp::Schedule::linear_lr(opt, 0.25, 1.0, 4);
        EXPECT_DOUBLE_EQ(opt.lr(), 0.025);  // a warm-up's start factor applies at once, as in PyTorch
    }
    expect_error(bp::Status::invalid_argument, [&] { bp::Schedule::step_lr(opt, 0, 0.5); });
}

TEST(Toolkit, losses_accuracy_init_and_clipping) {
    bp::Graph g;
    bp::Tensor a = g.tensor(std::vector<float>{0.5f, 2.0f, -1.0f, 0.0f}, {4}), zero = g.zeros({4});
    expect_near(bp::l1_loss(a, zero).to_vector<float>(), {3.5 / 4}, 1e-7);
    expect_near(bp::smooth_l1_loss(a, zero, bp::Reduction::sum).to_vector<float>(), {2.125}, 1e-6);
    expect_near(bp::smooth_l1_loss(a, zero, bp::Reduction::sum, 0.0).to_vector<float>(), {3.5}, 1e-6);
    expect_error(bp::Status::invalid_argument, [&] { bp::smooth_l1_loss(a, zero, static_cast<bp::Reduction>(7)); });
    bp::Tensor logits = g.tensor(std::vector<float>{1, 2, 3, 1, 3, 1}, {2, 3});
    bp::Tensor target = g.tensor(std::vector<std::int64_t>{2, -100}, {2});
    bp::Tensor logp = bp::log_softmax(logits, 1);
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    expect_near(bp::nll_loss(logp, target).to_vector<float>(), {std::log(z) - 3.0}, 1e-6);
    EXPECT_DOUBLE_EQ(bp::accuracy(logits, g.tensor(std::vector<std::int64_t>{2, 1}, {2})), 1.0);
    EXPECT_DOUBLE_EQ(bp::accuracy(logits, g.tensor(std::vector<std::int64_t>{2, 0}, {2})), 0.5);

    bp::Tensor w = g.zeros({50, 40});
    bp::init::uniform(w, -0.1, 0.1);
    for (float v : w.to_vector<float>()) EXPECT_TRUE(v >= -0.1f && v < 0.1f);
    bp::init::normal(w, 5.0, 0.01);
    EXPECT_NEAR(bp::mean(w).item(), 5.0, 0.01);
    bp::init::xavier(w);
    const double xb = std::sqrt(6.0 / 90.0);
    for (float v : w.to_vector<float>()) EXPECT_LE(std::fabs(v), xb);
    bp::init::xavier(w, 1.0, true);
    bp::init::kaiming(w, bp::Nonlinearity::relu);
    const double kb = std::sqrt(2.0) * std::sqrt(3.0 / 40.0);
    for (float v : w.to_vector<float>()) EXPECT_LE(std::fabs(v), kb + 1e-6);
    bp::init::kaiming(w, bp::Nonlinearity::leaky_relu, 0.2, true, true);
    expect_error(bp::Status::invalid_argument, [&] { bp::init::kaiming(w, static_cast<bp::Nonlinearity>(42)); });
    for (bp::Nonlinearity n : {bp::Nonlinearity::linear, bp::Nonlinearity::sigmoid, bp::Nonlinearity::tanh}) bp::init::kaiming(w, n);

    bp::Model m = small_model(g);
    bp::Tensor x = g.tensor(std::vector<float>{1, 2, 3, -1, -2, -3}, {2, 3});
    bp::cross_entropy(m(x), g.tensor(std::vector<std::int64_t>{0, 1}, {2})).backward();
    std::vector<bp::Tensor> params = m.parameters();
    EXPECT_GT(bp::clip_grad_norm(params, 1e-3), 1e-3);
    EXPECT_NEAR(bp::clip_grad_norm(params, 1e9), 1e-3, 1e-8);
    double largest = 0.0;
    for (const bp::Tensor &p : params)
        for (float v : p.grad().to_vector<float>()) largest = std::fmax(largest, std::fabs(v));
    EXPECT_NEAR(bp::clip_grad_norm(params, 1e9, INFINITY), largest, 1e-9);  // the max norm is the largest |grad|
    bp::clip_grad_value(params, 1e-5);
    for (float v : params[0].grad().to_vector<float>()) EXPECT_LE(std::fabs(v), 1e-5f);
    expect_error(bp::Status::invalid_argument, [&] { bp::clip_grad_norm({}, 1.0); });
    expect_error(bp::Status::invalid_argument, [&] { bp::clip_grad_value({}, 1.0); });
}

TEST(Checkpoint, resuming_is_bit_identical_to_never_stopping) {
    const std::string path = temp_path("bp_cpp_ckpt.safetensors");
    bp::Dataset d = small_data();
    // The reference: 10 steps without stopping.
    std::vector<float> reference;
    {
        bp::Graph g;
        g.manual_seed(3);
        bp::Model m = small_model(g);
        bp::Optimizer opt = bp::Optimizer::adam(g, m, 0.01);
        bp::Schedule s = bp::Schedule::step_lr(opt, 3, 0.5);
        bp::Loader loader(12, 5, true, 9);
        loader.start_epoch();
        train(g, m, opt, loader, d, 4);
        s.step();
        train(g, m, opt, loader, d, 6);
        reference = flat_params(m);
    }
    // 4 steps, save, then a fresh process-like setup loads and does the other 6.
    {
        bp::Graph g;
        g.manual_seed(3);
        bp::Model m = small_model(g);
        bp::Optimizer opt = bp::Optimizer::adam(g, m, 0.01);
        bp::Schedule s = bp::Schedule::step_lr(opt, 3, 0.5);
        bp::Loader loader(12, 5, true, 9);
        loader.start_epoch();
        train(g, m, opt, loader, d, 4);
        s.step();
        bp::save_checkpoint(path, g, m, {&opt, &s, &loader});
    }
    bp::Graph g;
    g.manual_seed(99);
    bp::Model m = small_model(g);
    bp::Optimizer opt = bp::Optimizer::adam(g, m, 0.01);
    bp::Schedule s = bp::Schedule::step_lr(opt, 3, 0.5);
    bp::Loader loader(12, 5, true, 0);
    bp::load_checkpoint(path, g, m, {&opt, &s, &loader});
    train(g, m, opt, loader, d, 6);
    EXPECT_EQ(flat_params(m), reference);
    std::remove(path.c_str());
}

TEST(Checkpoint, weights_round_trip_and_bad_files_change_nothing) {
    const std::string path = temp_path("bp_cpp_weights.safetensors");
    bp::Graph g;
    g.manual_seed(5);
    bp::Model a = small_model(g);
    bp::save_weights(path, g, a);
    bp::Model b = small_model(g);
    EXPECT_NE(flat_params(a), flat_params(b));
    bp::load_weights(path, g, b);
    EXPECT_EQ(flat_params(a), flat_params(b));
    bp::save_checkpoint(path, g, a);
    bp::load_checkpoint(path, g, b);

    bp::Model other;
    other.add_linear(g, 3, 5);
    const std::vector<float> before = flat_params(other);
    expect_error(bp::Status::format, [&] { bp::load_weights(path, g, other); });
    expect_error(bp::Status::format, [&] { bp::load_checkpoint(path, g, other); });
    EXPECT_EQ(flat_params(other), before);
    // A checkpoint without optimizer state cannot restore an optimizer.
    bp::Optimizer opt = bp::Optimizer::sgd(g, a, 0.1);
    expect_error(bp::Status::format, [&] { bp::load_checkpoint(path, g, a, {&opt, nullptr, nullptr}); });
    std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a safetensors file";
    expect_error(bp::Status::format, [&] { bp::load_weights(path, g, a); });
    expect_error(bp::Status::io, [&] { bp::save_weights("/nonexistent-dir/w.safetensors", g, a); });
    expect_error(bp::Status::io, [&] { bp::load_checkpoint("/nonexistent-dir/w.safetensors", g, a); });
    std::remove(path.c_str());
}

}  // namespace
