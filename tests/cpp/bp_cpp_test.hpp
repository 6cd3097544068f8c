// Helpers shared by the C++ binding's tests.
#ifndef BP_CPP_TEST_HPP
#define BP_CPP_TEST_HPP

#include <bp.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace bp_test {

/// Runs `body`, which must throw bp::Error with `code` (and nothing else); returns what().
inline std::string expect_error(bp::Status code, const std::function<void()> &body) {
    try {
        body();
    } catch (const bp::Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no bp::Error thrown; expected " << bp::status_name(code);
    return {};
}

/// Elementwise |got - want| <= tol.
template <typename T>
void expect_near(const std::vector<T> &got, const std::vector<double> &want, double tol = 1e-5) {
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); i++) EXPECT_NEAR(static_cast<double>(got[i]), want[i], tol) << "element " << i;
}

}  // namespace bp_test

#endif  // BP_CPP_TEST_HPP
