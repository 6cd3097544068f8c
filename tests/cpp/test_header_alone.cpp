// bp.hpp compiles on its own (nothing included before it), included twice, as C++17 with
// -Wall -Wextra -Werror -pedantic. Building this program is most of the test; running it makes a graph.
#include <bp.hpp>
#include <bp.hpp>

int main() {
    bp::Graph g;
    bp::Tensor t = g.zeros({2, 3});
    return (t.numel() == 6 && bp::version() == BP_VERSION_NUMBER) ? 0 : 1;
}
