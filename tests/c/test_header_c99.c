/* bp.h compiles on its own as C99 with -Wall -Wextra -Werror -pedantic, also when included twice, and
 * its compile-time version matches the library's run-time version. */
#include "bp.h"
#include "bp.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    int failures = 0;
    if (bp_version() != BP_VERSION_NUMBER) {
        fprintf(stderr, "bp_version() = %u, header BP_VERSION_NUMBER = %d\n", (unsigned)bp_version(), BP_VERSION_NUMBER);
        failures++;
    }
    if (BP_VERSION_NUMBER != BP_VERSION_MAJOR * 10000 + BP_VERSION_MINOR * 100 + BP_VERSION_PATCH) failures++;
    if (strcmp(bp_version_string(), BP_VERSION_STRING) != 0) {
        fprintf(stderr, "bp_version_string() = %s, header says %s\n", bp_version_string(), BP_VERSION_STRING);
        failures++;
    }
    printf("header (C99) %s, library %s\n", BP_VERSION_STRING, bp_version_string());
    return failures ? 1 : 0;
}
