/* sss_filter_cache.c - see sss_filter_cache.h. */
#include <stdlib.h>
#include <string.h>

#include "sss_filter_cache.h"

static int remember(sss_filter_cache *c, const char *zTab)
{
    if (c->n_refused == c->cap_refused) {
        int cap = c->cap_refused ? 2 * c->cap_refused : 4;
        if (cap < c->cap_refused) /* overflow: stop remembering */
            return -1;
        char **grown = realloc(c->refused, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        c->refused = grown;
        c->cap_refused = cap;
    }
    size_t len = strlen(zTab) + 1;
    char *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, zTab, len);
    c->refused[c->n_refused++] = copy;
    return 0;
}

int sss_filter_cache_call(void *pCtx, const char *zTab)
{
    sss_filter_cache *c = pCtx;
    /* A linear scan, like SQLite's own search of a session's attached tables
     * that runs on every change before the filter is asked. */
    for (int i = 0; i < c->n_refused; i++)
        if (strcmp(c->refused[i], zTab) == 0)
            return 0;
    int answer = c->ask(c->ctx, zTab);
    if (answer == 0)
        (void)remember(c, zTab);
    return answer;
}

void sss_filter_cache_clear(sss_filter_cache *cache)
{
    for (int i = 0; i < cache->n_refused; i++)
        free(cache->refused[i]);
    free(cache->refused);
    cache->refused = NULL;
    cache->n_refused = 0;
    cache->cap_refused = 0;
}
