// The autograd rules through bp.hpp: backward and .grad accumulation, retain_graph, create_graph and
// the functional gradient, no-grad, retain_grad, detach, and the errors each rule raises. Then the seed
// network against PyTorch's numbers (tests/data/seed).
#include "bp_cpp_test.hpp"

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace {

using bp_test::expect_error;
using bp_test::expect_near;
using V = std::vector<double>;

class Autograd : public ::testing::Test {
  protected:
    bp::Graph g;
    bp::Tensor x = g.tensor(V{1, 2, 3}, {3}).set_requires_grad();

    static V values(const bp::Tensor &t) { return t.to_vector<double>(); }
};

TEST_F(Autograd, backward_fills_leaf_grads_and_accumulates_across_calls) {
    EXPECT_TRUE(x.grad().is_null());
    bp::Tensor loss = bp::sum(x * x);
    EXPECT_TRUE(loss.requires_grad());
    EXPECT_FALSE(loss.is_leaf());
    EXPECT_STREQ(loss.grad_fn(), "sum");
    EXPECT_EQ(x.grad_fn(), nullptr);
    loss.backward(true);
    expect_near(values(x.grad()), {2, 4, 6});
    loss.backward();
    expect_near(values(x.grad()), {4, 8, 12});
    x.zero_grad();
    EXPECT_TRUE(x.grad().is_null());
}

TEST_F(Autograd, backward_twice_without_retain_graph_fails) {
    bp::Tensor loss = bp::sum(bp::exp(x));
    loss.backward();
    expect_error(bp::Status::autograd, [&] { loss.backward(); });
}

TEST_F(Autograd, backward_from_a_non_scalar_needs_a_seed_of_its_shape) {
    bp::Tensor y = x * 3.0;
    expect_error(bp::Status::autograd, [&] { y.backward(true); });
    y.backward(g.tensor(V{1, 0, 2}, {3}));
    expect_near(values(x.grad()), {3, 0, 6});
}

TEST_F(Autograd, create_graph_makes_the_gradient_differentiable) {
    // d/dx sum(x^3) = 3x^2; differentiating sum(3x^2) again gives 6x.
    bp::Tensor loss = bp::sum(bp::pow(x, 3.0));
    loss.backward(false, true);
    bp::Tensor g1 = x.grad();
    expect_near(values(g1), {3, 12, 27});
    EXPECT_TRUE(g1.requires_grad());
    // (zero_grad would free g1, which the second derivative is computed through.)
    std::vector<bp::Tensor> second = bp::autograd::grad({bp::sum(g1)}, {x});
    expect_near(values(second[0]), {6, 12, 18});
}

TEST_F(Autograd, functional_grad_leaves_dot_grad_alone_and_nests_with_create_graph) {
    bp::Tensor y = bp::sum(bp::pow(x, 3.0));
    std::vector<bp::Tensor> d1 = bp::autograd::grad({y}, {x}, {}, false, true);
    ASSERT_EQ(d1.size(), 1u);
    expect_near(values(d1[0]), {3, 12, 27});
    EXPECT_TRUE(x.grad().is_null());
    std::vector<bp::Tensor> d2 = bp::autograd::grad({bp::sum(d1[0])}, {x});
    expect_near(values(d2[0]), {6, 12, 18});
    // A seed per output, the null Tensor meaning "seed with 1".
    bp::Tensor z = x * 2.0;
    std::vector<bp::Tensor> seeded = bp::autograd::grad({z, bp::sum(x)}, {x}, {g.tensor(V{1, 10, 100}, {3}), bp::Tensor()});
    expect_near(values(seeded[0]), {3, 21, 201});
}

TEST_F(Autograd, functional_grad_errors) {
    bp::Tensor unrelated = g.tensor(V{1}, {1}).set_requires_grad();
    bp::Tensor y = bp::sum(x * x);
    expect_error(bp::Status::autograd, [&] { bp::autograd::grad({y}, {unrelated}, {}, true); });
    expect_error(bp::Status::invalid_argument, [&] { bp::autograd::grad({}, {x}); });
    expect_error(bp::Status::autograd, [&] { bp::autograd::grad({x * 2.0}, {x}, {}, true); });  // no seed for 3 elements
    bp::autograd::grad({y}, {x});
    expect_error(bp::Status::autograd, [&] { bp::autograd::grad({y}, {x}); });  // graph not retained
}

TEST_F(Autograd, no_grad_records_nothing_and_updates_in_place) {
    bp::Tensor loss = bp::sum(x * x);
    loss.backward();
    std::size_t nodes = g.node_count();
    {
        bp::NoGradGuard no_grad(g);
        x -= 0.5 * x.grad();
    }
    EXPECT_EQ(g.node_count(), nodes);
    expect_near(values(x), {0, 0, 0});
    EXPECT_TRUE(x.requires_grad());
    EXPECT_TRUE(x.is_leaf());
}

TEST_F(Autograd, retain_grad_keeps_a_non_leaf_gradient_and_without_it_reading_fails) {
    bp::Tensor h = x * 2.0, k = x * 3.0;
    h.retain_grad();
    bp::sum(h * k).backward();
    expect_near(values(h.grad()), {3, 6, 9});
    expect_error(bp::Status::autograd, [&] { k.grad(); });
    expect_error(bp::Status::autograd, [&] { g.full({1}, 1.0).retain_grad(); });
}

TEST_F(Autograd, detach_copies_values_without_history) {
    bp::Tensor y = x * 2.0;
    bp::Tensor d = y.detach();
    EXPECT_FALSE(d.requires_grad());
    EXPECT_TRUE(d.is_leaf());
    expect_near(values(d), {2, 4, 6});
}

TEST_F(Autograd, modifying_a_saved_tensor_makes_backward_fail) {
    bp::Tensor loss = bp::sum(x * x);
    {
        bp::NoGradGuard no_grad(g);
        x += 1.0;
    }
    expect_error(bp::Status::autograd, [&] { loss.backward(); });
}

TEST_F(Autograd, requires_grad_can_change_only_on_leaves) {
    bp::Tensor y = x * 2.0;
    expect_error(bp::Status::autograd, [&] { y.set_requires_grad(false); });
    x.set_requires_grad(false);
    EXPECT_FALSE(x.requires_grad());
    EXPECT_FALSE((x * 2.0).requires_grad());
}

// ---- the seed network against PyTorch ----------------------------------------------------------

template <typename T>
std::vector<T> read_file(const std::string &name, std::size_t n) {
    std::ifstream in(std::string(BP_SEED_DATA_DIR) + "/" + name, std::ios::binary);
    std::vector<T> v(n);
    in.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
    EXPECT_TRUE(in.good()) << name;
    EXPECT_EQ(in.peek(), std::char_traits<char>::eof()) << name << " holds more than " << n << " values";
    return v;
}

// |got - want| <= atol + rtol·|want| elementwise.
void expect_close(const std::vector<float> &got, const std::vector<float> &want, double rtol, double atol, const char *what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (std::size_t i = 0; i < got.size(); i++) {
        EXPECT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), atol + rtol * std::fabs(static_cast<double>(want[i])))
            << what << " element " << i;
    }
}

double kaiming_bound(int fan_in) { return std::sqrt(3.0) * std::sqrt(2.0 / 6.0) / std::sqrt(static_cast<double>(fan_in)); }

TEST(Seed, seed_network_matches_pytorch_data_init_forward_and_gradients) {
    bp::Graph g;
    g.manual_seed(212);
    bp::Tensor x = (g.rand({500, 20}) * 100.0).set_persistent();
    bp::Tensor y = g.randint(0, 3, {500}).set_persistent();
    auto param = [&](const bp::Shape &s, double bound) { return g.rand(s, -bound, bound).set_persistent().set_requires_grad(); };
    bp::Tensor w1 = param({13, 20}, kaiming_bound(20)), w2 = param({8, 13}, kaiming_bound(13));
    bp::Tensor w3 = param({3, 8}, kaiming_bound(8)), b3 = param({3}, 1.0 / std::sqrt(8.0));

    EXPECT_EQ(x.to_vector<float>(), read_file<float>("seed_X.f32", 500 * 20));
    EXPECT_EQ(y.to_vector<std::int64_t>(), read_file<std::int64_t>("seed_y.i64", 500));
    EXPECT_EQ(w1.to_vector<float>(), read_file<float>("seed_W1_init.f32", 13 * 20));
    EXPECT_EQ(b3.to_vector<float>(), read_file<float>("seed_b3_init.f32", 3));

    bp::Tensor h1 = bp::relu(bp::linear(x, w1));
    bp::Tensor h2 = bp::sigmoid(bp::linear(h1, w2));
    bp::Tensor z = bp::linear(h2, w3, b3);
    expect_close(z.to_vector<float>(), read_file<float>("seed_zhat.f32", 500 * 3), 1e-5, 1e-4, "zhat");
    bp::cross_entropy(z, y).backward();
    expect_close(w1.grad().to_vector<float>(), read_file<float>("seed_grad_W1.f32", 13 * 20), 1e-4, 1e-6, "grad W1");
    expect_close(w2.grad().to_vector<float>(), read_file<float>("seed_grad_W2.f32", 8 * 13), 1e-4, 1e-6, "grad W2");
    expect_close(w3.grad().to_vector<float>(), read_file<float>("seed_grad_W3.f32", 3 * 8), 1e-4, 1e-6, "grad W3");
    expect_close(b3.grad().to_vector<float>(), read_file<float>("seed_grad_b3.f32", 3), 1e-4, 1e-6, "grad b3");
}

}  // namespace
