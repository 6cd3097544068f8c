// Every function of bp.h is used by bp.hpp (called, or passed to a helper that calls it): a function
// added to the C API without a C++ wrapper fails here (every wrapper is exercised by the other suites).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

// Whether `name` occurs in `code` as a whole identifier.
bool mentions(const std::string &code, const std::string &name) {
    auto ident = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; };
    for (std::size_t at = code.find(name); at != std::string::npos; at = code.find(name, at + 1)) {
        const bool starts = at == 0 || !ident(code[at - 1]);
        const bool ends = at + name.size() == code.size() || !ident(code[at + name.size()]);
        if (starts && ends) return true;
    }
    return false;
}

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(Coverage, every_c_function_is_wrapped) {
    const std::string header = slurp(BP_C_HEADER), wrapper = slurp(BP_CPP_HEADER);
    const std::regex declaration(R"((?:^|\n)[a-z_]+[ *]+(bp_[a-z0-9_]+)\()");
    int functions = 0;
    for (std::sregex_iterator it(header.begin(), header.end(), declaration), end; it != end; ++it) {
        const std::string name = (*it)[1];
        functions++;
        EXPECT_TRUE(mentions(wrapper, name)) << name << " has no C++ wrapper";
    }
    EXPECT_GT(functions, 100);
    // The check can fail: a prefix of a wrapped name is not a mention.
    EXPECT_FALSE(mentions(wrapper, "bp_graph_rese"));
    EXPECT_FALSE(mentions(wrapper, "bp_no_such_function"));
}

}  // namespace
