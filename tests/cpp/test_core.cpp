// bp.hpp's owner and handle types: Graph (move-only RAII), Tensor (value handle), NoGradGuard, the
// factories and queries, and bp::Error with every status code the engine ABI can produce.
#include "bp_cpp_test.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

static_assert(!std::is_copy_constructible<bp::Graph>::value, "Graph is move-only");
static_assert(!std::is_copy_assignable<bp::Graph>::value, "Graph is move-only");
static_assert(std::is_nothrow_move_constructible<bp::Graph>::value, "Graph moves without throwing");
static_assert(std::is_nothrow_move_assignable<bp::Graph>::value, "Graph moves without throwing");
static_assert(std::is_trivially_copyable<bp::Tensor>::value, "Tensor is a plain value");
static_assert(!std::is_copy_constructible<bp::NoGradGuard>::value, "NoGradGuard is a scope");
static_assert(std::is_base_of<std::runtime_error, bp::Error>::value, "bp::Error is a std::runtime_error");

TEST(Graph, moving_a_graph_keeps_its_tensors_valid_and_empties_the_source) {
    bp::Graph a;
    bp::Tensor t = a.full({2}, 3.0);
    bp::Graph b(std::move(a));
    EXPECT_EQ(a.get(), nullptr);  // the moved-from state is specified: empty
    EXPECT_EQ(t.graph(), b.get());
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{3, 3}));
    bp::Graph c;
    c = std::move(b);
    EXPECT_EQ(b.get(), nullptr);
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{3, 3}));
}

TEST(Graph, move_assignment_frees_the_graph_it_replaces) {
    bp::Graph a, b;
    bp::Tensor old = a.full({1}, 1.0);
    a = std::move(b);
    // The C library detects the freed graph: the old handle is answered with invalid_handle.
    bp_test::expect_error(bp::Status::invalid_handle, [&] { old.item(); });
}

TEST(Graph, release_gives_up_ownership_and_adopting_takes_it_back) {
    bp::Graph a;
    bp::Tensor t = a.full({1}, 5.0);
    bp_graph *raw = a.release();
    EXPECT_EQ(a.get(), nullptr);
    bp::Graph b(raw);
    EXPECT_EQ(b.get(), raw);
    EXPECT_EQ(t.item(), 5.0);
}

TEST(Graph, reset_drops_step_tensors_and_keeps_persistent_ones) {
    bp::Graph g;
    bp::Tensor keep = g.full({2}, 1.0).set_persistent();
    bp::Tensor drop = keep * 2.0;
    EXPECT_TRUE(keep.is_persistent());
    EXPECT_FALSE(drop.is_persistent());
    EXPECT_EQ(g.tensor_count(), 2u);
    g.reset();
    EXPECT_EQ(g.tensor_count(), 1u);
    EXPECT_EQ(keep.to_vector<float>(), (std::vector<float>{1, 1}));
    bp_test::expect_error(bp::Status::invalid_handle, [&] { drop.numel(); });
    keep.set_persistent(false);
    g.reset();
    EXPECT_EQ(g.tensor_count(), 0u);
}

TEST(Graph, counts_memory_and_recorded_ops) {
    bp::Graph g;
    EXPECT_EQ(g.memory_limit(), std::numeric_limits<std::size_t>::max());
    bp::Tensor x = g.full({4}, 2.0).set_requires_grad();
    bp::Tensor y = bp::exp(x);
    EXPECT_EQ(g.node_count(), 1u);
    EXPECT_EQ(y.grad_fn(), std::string("exp"));
    bp::MemoryUsage used = g.memory_used();
    EXPECT_GE(used.live, 2 * 4 * sizeof(float));
    g.set_memory_limit(1 << 20);
    EXPECT_EQ(g.memory_limit(), std::size_t{1} << 20);
    g.reset();
    EXPECT_GT(g.memory_used().pooled, 0u);
}

TEST(Graph, memory_limit_refuses_allocations_with_out_of_memory_and_the_graph_stays_usable) {
    bp::Graph g;
    g.set_memory_limit(1024);
    bp_test::expect_error(bp::Status::out_of_memory, [&] { g.zeros({1024}); });
    EXPECT_EQ(g.zeros({16}).numel(), 16u);
    bp_test::expect_error(bp::Status::out_of_memory, [&] { g.set_memory_limit(8); });
}

TEST(Graph, manual_seed_replays_the_generator) {
    bp::Graph g;
    g.manual_seed(7);
    std::vector<float> a = g.rand({5}).to_vector<float>();
    std::vector<double> n1 = g.randn({3}, 1.0, 2.0, bp::DType::f64).to_vector<double>();
    std::vector<std::int64_t> i1 = g.randint(0, 10, {4}).to_vector<std::int64_t>();
    g.manual_seed(7);
    EXPECT_EQ(g.rand({5}).to_vector<float>(), a);
    EXPECT_EQ(g.randn({3}, 1.0, 2.0, bp::DType::f64).to_vector<double>(), n1);
    EXPECT_EQ(g.randint(0, 10, {4}).to_vector<std::int64_t>(), i1);
    for (float v : a) EXPECT_TRUE(v >= 0.0f && v < 1.0f);
    for (std::int64_t v : i1) EXPECT_TRUE(v >= 0 && v < 10);
}

TEST(Graph, a_restored_generator_state_replays_the_draws_and_a_malformed_one_is_a_format_error) {
    bp::Graph g;
    g.manual_seed(11);
    std::vector<std::uint32_t> state = g.generator_state();
    ASSERT_EQ(state.size(), static_cast<std::size_t>(BP_GENERATOR_STATE_WORDS));
    std::vector<double> first = g.randn({100}, 0.0, 1.0, bp::DType::f64).to_vector<double>();
    g.manual_seed(99);
    g.set_generator_state(state);
    EXPECT_EQ(g.randn({100}, 0.0, 1.0, bp::DType::f64).to_vector<double>(), first);
    bp_test::expect_error(bp::Status::format, [&] { g.set_generator_state({1, 2, 3}); });
    std::vector<std::uint32_t> bad = state;
    bad[2] = 100000;  // a position past the end of the state
    bp_test::expect_error(bp::Status::format, [&] { g.set_generator_state(bad); });
}

TEST(Graph, factories_make_the_asked_shape_type_and_values) {
    bp::Graph g;
    bp::Tensor z = g.zeros({2, 3}, bp::DType::f64);
    EXPECT_EQ(z.shape(), (bp::Shape{2, 3}));
    EXPECT_EQ(z.ndim(), 2u);
    EXPECT_EQ(z.numel(), 6u);
    EXPECT_EQ(z.dtype(), bp::DType::f64);
    EXPECT_EQ(z.to_vector<double>(), std::vector<double>(6, 0.0));
    bp::Tensor scalar = g.full({}, 4.5);
    EXPECT_EQ(scalar.ndim(), 0u);
    EXPECT_EQ(scalar.item(), 4.5);
    EXPECT_EQ(g.full({2}, 7, bp::DType::i64).to_vector<std::int64_t>(), (std::vector<std::int64_t>{7, 7}));
    EXPECT_EQ(g.tensor(std::vector<float>{1, 2, 3, 4}, {2, 2}).shape(), (bp::Shape{2, 2}));
    EXPECT_EQ(g.tensor(std::vector<double>{1.5}, {1}).to_vector<double>(), std::vector<double>{1.5});
    bp::Tensor idx = g.tensor(std::vector<std::int64_t>{3, 1}, {2});
    EXPECT_EQ(idx.dtype(), bp::DType::i64);
    EXPECT_EQ(g.arange(0, 5).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
    EXPECT_EQ(g.arange(1, 2, 0.5, bp::DType::f64).to_vector<double>(), (std::vector<double>{1.0, 1.5}));
}

TEST(Tensor, reads_and_writes_copy_in_every_element_type_and_bump_the_version) {
    bp::Graph g;
    bp::Tensor f = g.zeros({3});
    std::uint32_t v0 = f.version();
    f.write(std::vector<float>{1, 2, 3});
    EXPECT_GT(f.version(), v0);
    float out[3];
    f.read(out, 3);
    EXPECT_EQ(out[2], 3.0f);
    bp::Tensor d = g.zeros({2}, bp::DType::f64);
    d.write(std::vector<double>{0.25, 0.5});
    double dout[2];
    d.read(dout, 2);
    EXPECT_EQ(dout[1], 0.5);
    bp::Tensor i = g.zeros({2}, bp::DType::i64);
    i.write(std::vector<std::int64_t>{-1, 9});
    std::int64_t iout[2];
    i.read(iout, 2);
    EXPECT_EQ(iout[0], -1);
    bp::Tensor src = g.full({3}, 8.0);
    f.assign(src);
    EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{8, 8, 8}));
}

TEST(Tensor, null_handle_is_falsy_and_freed_tensor_becomes_stale) {
    bp::Graph g;
    bp::Tensor null;
    EXPECT_TRUE(null.is_null());
    EXPECT_FALSE(static_cast<bool>(null));
    bp::Tensor t = g.full({1}, 1.0);
    bp::Tensor copy = t;
    EXPECT_TRUE(static_cast<bool>(t));
    t.free();
    EXPECT_TRUE(t.is_null());
    bp_test::expect_error(bp::Status::invalid_handle, [&] { copy.item(); });
    bp_test::expect_error(bp::Status::invalid_handle, [&] { copy.free(); });
    bp::Tensor wrapped(g.get(), g.full({1}, 2.0).handle());
    EXPECT_EQ(wrapped.item(), 2.0);
}

TEST(Tensor, to_dot_describes_the_history) {
    bp::Graph g;
    bp::Tensor x = g.full({2}, 1.0).set_requires_grad();
    std::string dot = bp::sum(bp::relu(x)).to_dot();
    EXPECT_EQ(dot.rfind("digraph", 0), 0u) << dot;
    EXPECT_NE(dot.find("relu"), std::string::npos) << dot;
    EXPECT_EQ(dot.find('\0'), std::string::npos);
}

TEST(NoGradGuard, turns_recording_off_for_its_scope_and_restores_it) {
    bp::Graph g;
    bp::Tensor x = g.full({2}, 1.0).set_requires_grad();
    EXPECT_TRUE(g.is_grad_enabled());
    {
        bp::NoGradGuard no_grad(g);
        EXPECT_FALSE(g.is_grad_enabled());
        bp::Tensor y = x * 2.0;
        EXPECT_FALSE(y.requires_grad());
        EXPECT_TRUE(y.is_leaf());
        {
            bp::NoGradGuard nested(g);
        }
        EXPECT_FALSE(g.is_grad_enabled());  // the nested guard restored "off", not "on"
    }
    EXPECT_TRUE(g.is_grad_enabled());
    EXPECT_TRUE((x * 2.0).requires_grad());
    EXPECT_TRUE(g.set_grad_enabled(false));
    EXPECT_FALSE(g.set_grad_enabled(true));
}

TEST(Error, carries_the_status_code_and_the_library_message) {
    bp::Graph g;
    bp::Tensor a = g.zeros({2, 3}), b = g.zeros({4, 5});
    try {
        bp::matmul(a, b);
        FAIL() << "matmul of [2,3] and [4,5] must fail";
    } catch (const bp::Error &e) {
        EXPECT_EQ(e.code(), bp::Status::shape_mismatch);
        EXPECT_EQ(std::string(e.what()).rfind("BP_ERR_SHAPE_MISMATCH: ", 0), 0u) << e.what();
        EXPECT_FALSE(e.message().empty());
        EXPECT_NE(std::string(e.what()).find(e.message()), std::string::npos);
    }
    bp::Error made(bp::Status::format, "bad file");
    EXPECT_EQ(made.code(), bp::Status::format);
    EXPECT_STREQ(made.what(), "BP_ERR_FORMAT: bad file");
}

TEST(Error, status_codes_are_the_pinned_c_numbers_with_their_names) {
    const std::pair<bp::Status, const char *> codes[] = {
        {bp::Status::ok, "BP_OK"},
        {bp::Status::invalid_argument, "BP_ERR_INVALID_ARGUMENT"},
        {bp::Status::shape_mismatch, "BP_ERR_SHAPE_MISMATCH"},
        {bp::Status::invalid_handle, "BP_ERR_INVALID_HANDLE"},
        {bp::Status::out_of_memory, "BP_ERR_OUT_OF_MEMORY"},
        {bp::Status::autograd, "BP_ERR_AUTOGRAD"},
        {bp::Status::dtype, "BP_ERR_DTYPE"},
        {bp::Status::io, "BP_ERR_IO"},
        {bp::Status::format, "BP_ERR_FORMAT"},
        {bp::Status::anomaly, "BP_ERR_ANOMALY"},
        {bp::Status::internal, "BP_ERR_INTERNAL"},
        {bp::Status::unsupported, "BP_ERR_UNSUPPORTED"},
    };
    std::int32_t expected = 0;
    for (const auto &c : codes) {
        EXPECT_EQ(static_cast<std::int32_t>(c.first), expected++);
        EXPECT_STREQ(bp::status_name(c.first), c.second);
    }
}

// One row per error path of the engine ABI: the call and the code it must throw.
TEST(Error, every_error_path_throws_its_code) {
    bp::Graph g;
    bp::Tensor f = g.zeros({3});
    bp::Tensor i = g.zeros({3}, bp::DType::i64);
    struct Case {
        const char *what;
        bp::Status code;
        std::function<void()> call;
    };
    const Case cases[] = {
        {"wrong buffer length", bp::Status::invalid_argument, [&] { g.tensor(std::vector<float>{1, 2}, {3}); }},
        {"negative dropout probability", bp::Status::invalid_argument, [&] { bp::dropout(f, -0.5); }},
        {"null graph", bp::Status::invalid_argument, [&] { bp::Tensor().numel(); }},
        {"no broadcast", bp::Status::shape_mismatch, [&] { f + g.zeros({4}); }},
        {"stale handle", bp::Status::invalid_handle, [&] { bp::Tensor(g.get(), bp_tensor{1, 999, 1}).numel(); }},
        {"memory limit", bp::Status::out_of_memory,
         [&] {
             bp::Graph small;
             small.set_memory_limit(64);
             small.zeros({1000});
         }},
        {"backward twice", bp::Status::autograd,
         [&] {
             bp::Tensor p = g.full({1}, 2.0).set_requires_grad();
             bp::Tensor l = bp::sum(p * p);
             l.backward();
             l.backward();
         }},
        {"float read of int64", bp::Status::dtype, [&] { i.to_vector<float>(); }},
        {"requires_grad on int64", bp::Status::dtype, [&] { i.set_requires_grad(); }},
        {"NaN under anomaly detection", bp::Status::anomaly,
         [&] {
             bp::Graph a;
             a.set_anomaly_detection(true);
             bp::log(a.full({1}, -1.0));
         }},
        {"malformed generator state", bp::Status::format, [&] { g.set_generator_state(std::vector<std::uint32_t>(4)); }},
        {"panic inside the library", bp::Status::internal, [] { bp::debug::trigger_panic(); }},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        bp_test::expect_error(c.code, c.call);
    }
    // After all of that the graph still works.
    EXPECT_EQ((f + 1.0).to_vector<float>(), (std::vector<float>{1, 1, 1}));
}

TEST(Error, a_failed_call_writes_nothing_and_leaves_the_graph_usable) {
    bp::Graph g;
    std::size_t before = g.tensor_count();
    bp_test::expect_error(bp::Status::shape_mismatch, [&] { bp::reshape(g.zeros({2, 3}), {4}); });
    EXPECT_EQ(g.tensor_count(), before + 1);  // only the zeros, no half-made result
}

TEST(Version, library_and_header_agree) {
    EXPECT_EQ(bp::version(), static_cast<std::uint32_t>(BP_VERSION_NUMBER));
    EXPECT_STREQ(bp::version_string(), BP_VERSION_STRING);
}

}  // namespace
