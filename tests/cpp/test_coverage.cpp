// Every function of bp.h is called by bp.hpp: a function added to the C API without a C++ wrapper
// fails here (and every wrapper is exercised by the other suites).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

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
        EXPECT_NE(wrapper.find(name + "("), std::string::npos) << name << " has no C++ wrapper";
    }
    EXPECT_GT(functions, 100);
}

}  // namespace
