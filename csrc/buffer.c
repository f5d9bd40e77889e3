/* buffer.c - the growable output buffer shared by the C helpers. */
#include <stdlib.h>
#include "sss.h"

int sss_buffer_init(sss_buffer *buf, size_t cap)
{
    buf->len = 0;
    buf->moved = 0;
    return sss_buffer_reserve(buf, cap);
}

void sss_buffer_free(sss_buffer *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

/* Makes room for `extra` more bytes; 0 on success, -1 when out of memory.
 * Doubling keeps appends amortised O(1). */
int sss_buffer_reserve(sss_buffer *buf, size_t extra)
{
    size_t need = buf->len + extra;
    if (need <= buf->cap)
        return 0;
    size_t cap = buf->cap ? buf->cap : 4096;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(buf->data, cap);
    if (!p)
        return -1;
    /* Flag every growth, not only a move: the Python side's view spans
     * [data, data + cap), so a realloc that grew in place leaves it too short
     * (marshal then reads past its end: "marshal data too short"). */
    buf->moved = 1;
    buf->data = p;
    buf->cap = cap;
    return 0;
}
