/* A program that only knows the installed bp.h and libbp: computes d(x^2)/dx at 3 and checks the
 * versions agree. Built by run.sh with pkg-config and with find_package(bp). */
#include <bp.h>

#include <stdio.h>

int main(void) {
    bp_graph *g = NULL;
    bp_tensor x, y, dx;
    double v = 0;
    const double three = 3.0;
    if (bp_graph_new(&g) != BP_OK) return 1;
    if (bp_tensor_from_f64(g, &three, 1, NULL, 0, &x) != BP_OK || bp_tensor_set_requires_grad(g, x, true) != BP_OK ||
        bp_mul(g, x, x, &y) != BP_OK || bp_backward(g, y, NULL, false, false) != BP_OK ||
        bp_grad(g, x, &dx) != BP_OK || bp_tensor_item(g, dx, &v) != BP_OK) {
        fprintf(stderr, "failed: %s\n", bp_last_error_message());
        return 1;
    }
    bp_graph_free(g);
    printf("d(x^2)/dx at 3 = %g; library %s, header %s\n", v, bp_version_string(), BP_VERSION_STRING);
    return (v == 6.0 && bp_version() == BP_VERSION_NUMBER) ? 0 : 1;
}
