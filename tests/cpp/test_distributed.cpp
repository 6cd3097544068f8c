// Data-parallel training through bp.hpp: bp::DataParallel over a fake collective (a world of two
// identical ranks), the sharded Loader, and a failing collective surfacing as Status::collective.
#include "bp_cpp_test.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

static_assert(!std::is_copy_constructible<bp::DataParallel>::value && std::is_nothrow_move_constructible<bp::DataParallel>::value,
              "DataParallel is a move-only owner");

// The other rank always holds what this one holds: a sum over the ranks is twice the buffer; rank 0's
// parameters are all 0.25.
struct Mirror {
    int all_reduces = 0;
    int broadcasts = 0;
    std::int32_t fail_with = 0;
};
std::int32_t mirror_all_reduce(void *user, float *buf, std::size_t len) {
    auto *m = static_cast<Mirror *>(user);
    m->all_reduces++;
    if (m->fail_with) return m->fail_with;
    for (std::size_t i = 0; i < len; i++) buf[i] *= 2.0f;
    return 0;
}
std::int32_t mirror_broadcast(void *user, float *buf, std::size_t len) {
    static_cast<Mirror *>(user)->broadcasts++;
    for (std::size_t i = 0; i < len; i++) buf[i] = 0.25f;
    return 0;
}

bp::Tensor loss_of(bp::Graph &g, bp::Model &m) {
    std::vector<float> x(12);
    for (int i = 0; i < 12; i++) x[i] = static_cast<float>(i % 5) / 4.0f - 0.5f;
    bp::Tensor xt = g.tensor(x, {4, 3});
    bp::Tensor yt = g.tensor(std::vector<std::int64_t>{0, 1, 1, 0}, {4});
    return bp::cross_entropy(m(xt), yt);
}

TEST(DataParallel, startup_broadcast_and_averaged_gradients_equal_a_plain_backward) {
    bp::Graph g, ref;
    bp::Model m, rm;
    m.add_linear(g, 3, 2);
    rm.add_linear(ref, 3, 2);
    for (const bp::Tensor &p : rm.parameters()) p.write(std::vector<float>(p.numel(), 0.25f));
    Mirror mirror;
    bp_collective c{&mirror, 1, 2, mirror_all_reduce, mirror_broadcast};
    bp::DataParallel dp(g, m.parameters(), c);
    EXPECT_EQ(mirror.broadcasts, 1);
    for (float v : dp.parameters()) EXPECT_EQ(v, 0.25f);

    dp.backward(loss_of(g, m));
    loss_of(ref, rm).backward();
    EXPECT_EQ(mirror.all_reduces, 1);
    std::vector<float> expect;
    for (const bp::Tensor &p : rm.parameters()) {
        std::vector<float> gv = p.grad().to_vector<float>();
        expect.insert(expect.end(), gv.begin(), gv.end());
    }
    bp::DataParallel::Span grads = dp.gradients();
    ASSERT_EQ(grads.size, expect.size());
    for (std::size_t i = 0; i < grads.size; i++) EXPECT_EQ(grads.data[i], expect[i]) << i;

    dp.sync_parameters();
    EXPECT_EQ(mirror.broadcasts, 2);
    EXPECT_EQ(dp.stats().all_reduces, 1u);
    EXPECT_EQ(dp.stats().all_reduce_bytes, 8u * sizeof(float));

    mirror.fail_with = 3;
    bp_test::expect_error(bp::Status::collective, [&] { dp.average_gradients(); });
}

TEST(DataParallel, a_sharded_loader_splits_the_epoch_between_ranks) {
    std::vector<float> x(10);
    for (int i = 0; i < 10; i++) x[i] = static_cast<float>(i);
    bp::Dataset data(x, std::vector<std::int64_t>(10, 0), 1);
    bp::Graph g;
    std::vector<int> seen(10, 0);
    for (int rank = 0; rank < 2; rank++) {
        bp::Loader l(10, 3, true, 4);
        l.shard(rank, 2);
        l.start_epoch();
        EXPECT_EQ(l.epoch(), 1u);
        while (auto batch = l.next_batch(g, data)) {
            for (float r : batch->x.to_vector<float>()) seen[static_cast<int>(r)]++;
            g.reset();
        }
    }
    for (int n : seen) EXPECT_EQ(n, 1);
    bp::Loader l(10, 3);
    bp_test::expect_error(bp::Status::invalid_argument, [&] { l.shard(2, 2); });
}

}  // namespace
