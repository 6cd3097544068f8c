// Every op function and operator of bp.hpp, checked against values computed here by hand.
#include "bp_cpp_test.hpp"

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using bp_test::expect_near;
using V = std::vector<double>;

class Ops : public ::testing::Test {
  protected:
    bp::Graph g;
    bp::Tensor x = g.tensor(V{-1.0, 0.5, 2.0}, {3});
    bp::Tensor m = g.tensor(V{1, 2, 3, 4, 5, 6}, {2, 3});  // [[1 2 3] [4 5 6]]

    static V values(const bp::Tensor &t) { return t.to_vector<double>(); }
};

TEST_F(Ops, unary_functions_match_their_formulas) {
    const V xs = values(x);
    auto each = [&](double (*f)(double)) {
        V out;
        for (double v : xs) out.push_back(f(v));
        return out;
    };
    expect_near(values(bp::neg(x)), {1.0, -0.5, -2.0});
    expect_near(values(-x), {1.0, -0.5, -2.0});
    expect_near(values(bp::exp(x)), each([](double v) { return std::exp(v); }), 1e-12);
    expect_near(values(bp::log(bp::abs(x))), {0.0, std::log(0.5), std::log(2.0)}, 1e-12);
    expect_near(values(bp::sqrt(bp::abs(x))), {1.0, std::sqrt(0.5), std::sqrt(2.0)}, 1e-12);
    expect_near(values(bp::abs(x)), {1.0, 0.5, 2.0});
    expect_near(values(bp::relu(x)), {0.0, 0.5, 2.0});
    expect_near(values(bp::sigmoid(x)), each([](double v) { return 1.0 / (1.0 + std::exp(-v)); }), 1e-12);
    expect_near(values(bp::tanh(x)), each([](double v) { return std::tanh(v); }), 1e-12);
    expect_near(values(bp::gelu(x)), each([](double v) { return v * 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))); }), 1e-7);
    expect_near(values(bp::leaky_relu(x, 0.1)), {-0.1, 0.5, 2.0});
    expect_near(values(bp::leaky_relu(x)), {-0.01, 0.5, 2.0});
    expect_near(values(bp::pow(x, 2.0)), {1.0, 0.25, 4.0});
}

TEST_F(Ops, binary_operators_broadcast_and_scalars_work_on_either_side) {
    bp::Tensor row = g.tensor(V{10, 20, 30}, {3});
    expect_near(values(m + row), {11, 22, 33, 14, 25, 36});
    expect_near(values(m - row), {-9, -18, -27, -6, -15, -24});
    expect_near(values(m * row), {10, 40, 90, 40, 100, 180});
    expect_near(values(row / m), {10, 10, 10, 2.5, 4, 5});
    expect_near(values(x + 1.0), {0.0, 1.5, 3.0});
    expect_near(values(1.0 + x), {0.0, 1.5, 3.0});
    expect_near(values(x - 1.0), {-2.0, -0.5, 1.0});
    expect_near(values(1.0 - x), {2.0, 0.5, -1.0});
    expect_near(values(x * 3.0), {-3.0, 1.5, 6.0});
    expect_near(values(3.0 * x), {-3.0, 1.5, 6.0});
    expect_near(values(x / 2.0), {-0.5, 0.25, 1.0});
    expect_near(values(2.0 / x), {-2.0, 4.0, 1.0});
}

TEST_F(Ops, compound_assignment_writes_in_place_and_keeps_the_handle) {
    bp::Tensor t = g.tensor(V{1, 2}, {2});
    const bp_tensor before = t.handle();
    const std::uint32_t version = t.version();
    bp::Tensor two = g.tensor(V{2, 2}, {2});
    t += two;
    expect_near(values(t), {3, 4});
    t -= two;
    expect_near(values(t), {1, 2});
    t *= two;
    expect_near(values(t), {2, 4});
    t /= two;
    expect_near(values(t), {1, 2});
    t += 1.0;
    expect_near(values(t), {2, 3});
    t -= 0.5;
    expect_near(values(t), {1.5, 2.5});
    t *= 2.0;
    expect_near(values(t), {3, 5});
    t /= 4.0;
    expect_near(values(t), {0.75, 1.25});
    EXPECT_EQ(t.handle().index, before.index);
    EXPECT_EQ(t.handle().generation, before.generation);
    EXPECT_EQ(t.version(), version + 8);
}

TEST_F(Ops, reductions_over_all_or_some_dimensions) {
    expect_near(values(bp::sum(m)), {21});
    expect_near(values(bp::sum(m, {1})), {6, 15});
    EXPECT_EQ(bp::sum(m, {0}, true).shape(), (bp::Shape{1, 3}));
    expect_near(values(bp::mean(m)), {3.5});
    expect_near(values(bp::mean(m, {-1}, true)), {2, 5});
    expect_near(values(bp::max(m)), {6});
    expect_near(values(bp::max(m, {0})), {4, 5, 6});
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    expect_near(values(bp::slice(bp::softmax(m, 1), 0, 0, 1)), {std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z}, 1e-12);
    expect_near(values(bp::slice(bp::log_softmax(m, -1), 0, 0, 1)), {1 - std::log(z), 2 - std::log(z), 3 - std::log(z)}, 1e-12);
}

TEST_F(Ops, shape_functions_move_elements_where_pytorch_does) {
    EXPECT_EQ(bp::reshape(m, {3, -1}).shape(), (bp::Shape{3, 2}));
    expect_near(values(bp::transpose(m, 0, 1)), {1, 4, 2, 5, 3, 6});
    expect_near(values(m.t()), {1, 4, 2, 5, 3, 6});
    bp::Tensor cube = bp::reshape(g.arange(0, 6, 1, bp::DType::f64), {1, 2, 3});
    EXPECT_EQ(bp::permute(cube, {2, 0, 1}).shape(), (bp::Shape{3, 1, 2}));
    expect_near(values(bp::permute(cube, {2, 0, 1})), {0, 3, 1, 4, 2, 5});
    bp::Tensor col = g.tensor(V{1, 2}, {2, 1});
    expect_near(values(bp::expand(col, {2, 3})), {1, 1, 1, 2, 2, 2});
    expect_near(values(bp::sum_to(m, {1, 3})), {5, 7, 9});
    expect_near(values(bp::concat({m, m}, 0)), {1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6});
    expect_near(values(bp::concat({x, x}, -1)), {-1, 0.5, 2, -1, 0.5, 2});
    expect_near(values(bp::slice(m, 1, 0, 3, 2)), {1, 3, 4, 6});
    expect_near(values(bp::slice(x, 0, -2, 3)), {0.5, 2});
    expect_near(values(bp::slice_scatter(g.tensor(V{7, 8}, {2}), {5}, 0, 1, 2)), {0, 7, 0, 8, 0});
    expect_near(values(bp::slice_scatter(g.tensor(V{7}, {1}), {2}, 0, 1)), {0, 7});
}

TEST_F(Ops, index_functions_pick_and_scatter) {
    bp::Tensor idx = g.tensor(std::vector<std::int64_t>{2, 0, 2}, {3});
    expect_near(values(bp::index_select(m, 1, idx)), {3, 1, 3, 6, 4, 6});
    expect_near(values(bp::index_add(x, 0, idx, 4)), {0.5, 0, 1, 0});
    bp::Tensor gidx = g.tensor(std::vector<std::int64_t>{2, 1, 0, 0}, {2, 2});
    expect_near(values(bp::gather(m, 1, gidx)), {3, 2, 4, 4});
    bp::Tensor ones = g.full({2, 2}, 1.0, bp::DType::f64);
    expect_near(values(bp::scatter_add(ones, 1, gidx, {2, 3})), {0, 1, 1, 2, 0, 0});
}

TEST_F(Ops, linear_algebra_and_layers) {
    bp::Tensor w = g.tensor(V{1, 0, 0, 0, 1, 1}, {2, 3});  // [out 2, in 3]
    expect_near(values(bp::matmul(m, w.t())), {1, 5, 4, 11});
    expect_near(values(bp::matmul_t(m, w, false, true)), {1, 5, 4, 11});
    expect_near(values(bp::matmul_t(m, m, true, false)), {17, 22, 27, 22, 29, 36, 27, 36, 45});
    expect_near(values(bp::linear(m, w)), {1, 5, 4, 11});
    bp::Tensor b = g.tensor(V{0.5, -1}, {2});
    expect_near(values(bp::linear(m, w, b)), {1.5, 4, 4.5, 10});
    bp::Tensor shift = g.tensor(V{-2, -5}, {2});
    expect_near(values(bp::linear_act(m, w, shift, bp::Activation::relu)), {0, 0, 2, 6});
    expect_near(values(bp::linear_act(m, w, bp::Activation::tanh)), {std::tanh(1.0), std::tanh(5.0), std::tanh(4.0), std::tanh(11.0)});
    EXPECT_THROW(bp::linear_act(m, w, static_cast<bp::Activation>(7)), bp::Error);
}

TEST_F(Ops, losses_follow_pytorch_definitions) {
    bp::Tensor a = g.tensor(V{1, 2}, {2}), b = g.tensor(V{0, 4}, {2});
    expect_near(values(bp::mse_loss(a, b)), {2.5});
    expect_near(values(bp::mse_loss(a, b, bp::Reduction::sum)), {5});
    expect_near(values(bp::mse_loss(a, b, bp::Reduction::none)), {1, 4});
    bp::Tensor logits = g.tensor(V{0, 0, 1, 1}, {2, 2});
    bp::Tensor target = g.tensor(std::vector<std::int64_t>{0, 1}, {2});
    const double l = std::log(2.0);
    expect_near(values(bp::cross_entropy(logits, target)), {l}, 1e-12);
    expect_near(values(bp::cross_entropy(logits, target, bp::Reduction::none)), {l, l}, 1e-12);
    expect_near(values(bp::cross_entropy(logits, target, bp::Reduction::sum, 0.0, 1)), {l}, 1e-12);  // sample 1 ignored
    expect_near(values(bp::cross_entropy(logits, target, bp::Reduction::mean, 0.5)), {l}, 1e-12);  // equal logits: smoothing changes nothing
    bp::Tensor zero = g.zeros({2}, bp::DType::f64), half = g.full({2}, 0.5, bp::DType::f64);
    expect_near(values(bp::binary_cross_entropy_with_logits(zero, half)), {l}, 1e-12);
    expect_near(values(bp::binary_cross_entropy_with_logits(zero, half, bp::Reduction::sum)), {2 * l}, 1e-12);
}

TEST_F(Ops, dropout_zeroes_or_scales_when_training_and_is_identity_otherwise) {
    bp::Tensor ones = g.full({1000}, 1.0, bp::DType::f64);
    g.manual_seed(3);
    V d = values(bp::dropout(ones, 0.5));
    std::size_t zeros = 0;
    for (double v : d) {
        EXPECT_TRUE(v == 0.0 || v == 2.0) << v;
        zeros += v == 0.0;
    }
    EXPECT_GT(zeros, 350u);
    EXPECT_LT(zeros, 650u);
    bp::Tensor same = bp::dropout(ones, 0.5, false);
    EXPECT_EQ(same.handle().index, ones.handle().index);
}

}  // namespace
