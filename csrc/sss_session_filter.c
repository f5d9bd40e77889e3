/* sss_session_filter.c - see sss_session_filter.h. */
#include <string.h>

#include "sss_session_filter.h"

const char sss_reserved_prefix[] = "_sss_";

int sss_session_filter_unreserved(void *pCtx, const char *zTab) {
    (void)pCtx;
    return strncmp(zTab, sss_reserved_prefix, sizeof(sss_reserved_prefix) - 1) != 0;
}
