// bp.h compiles on its own as C++11 with -Wall -Wextra -Werror -pedantic, also when included twice,
// and declares its functions with C linkage (this program links against the C library).
#include "bp.h"
#include "bp.h"

#include <cstdio>
#include <cstring>

int main() {
    bp_graph *g = nullptr;
    if (bp_graph_new(&g) != BP_OK) return 1;
    const int64_t dims[2] = {2, 3};
    bp_tensor t;
    bool ok = bp_tensor_new(g, BP_DTYPE_F32, dims, 2, &t) == BP_OK && bp_version() == BP_VERSION_NUMBER &&
              std::strcmp(bp_version_string(), BP_VERSION_STRING) == 0;
    bp_graph_free(g);
    std::printf("header (C++) %s: %s\n", BP_VERSION_STRING, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
