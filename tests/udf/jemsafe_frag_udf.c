/*
 * jemsafe's fragmentation test UDF for MariaDB/MySQL (tests/fragmentation.rs).
 *
 *   jemsafe_fragment_kb(n): allocates n objects of 1000 bytes (jemalloc's 1 KiB size
 *     class), then frees 15 of every 16: the 1 KiB slabs stay, each holding few live
 *     regions. Returns the bytes kept.
 *   jemsafe_dense_kb(k): keeps k KiB in 1500-byte objects (the 1.5 KiB class), allocated
 *     one after the other and all kept: its slabs are full. Returns the bytes kept.
 *
 * Each allocation happens in a function of its own with a distinctive name, never
 * inlined and not a tail call, so that it is the innermost frame of its stacks in a heap
 * profile. The objects stay allocated until the server stops (they are what the heap
 * profile and the size classes' slabs show).
 *
 * The UDF structures are declared here (MariaDB's mysql_com.h layout) so that no
 * development package is needed.
 */
#include <stdlib.h>
#include <string.h>

#include "jemsafe_udf.h"

#define FRAGMENT_REQUEST 1000
#define DENSE_REQUEST 1500
#define MAX_KEPT (1 << 22)

/* What stays allocated, for as long as the server runs. */
static void *kept[MAX_KEPT];
static size_t nkept;

__attribute__((noinline)) void *jemsafe_frag_alloc_1k(void) {
    void *p = malloc(FRAGMENT_REQUEST);
    if (p)
        memset(p, 0x5a, FRAGMENT_REQUEST); /* touched, and malloc is no tail call */
    return p;
}

__attribute__((noinline)) void *jemsafe_dense_alloc_1536(void) {
    void *p = malloc(DENSE_REQUEST);
    if (p)
        memset(p, 0xa5, DENSE_REQUEST);
    return p;
}

static my_bool one_int(UDF_ARGS *args, char *message, const char *name) {
    if (args->arg_count != 1 || args->arg_type[0] != INT_RESULT) {
        strcpy(message, name);
        strcat(message, "(n) takes one integer");
        return 1;
    }
    return 0;
}

my_bool jemsafe_fragment_kb_init(UDF_INIT *init, UDF_ARGS *args, char *message) {
    (void)init;
    return one_int(args, message, "jemsafe_fragment_kb");
}

long long jemsafe_fragment_kb(UDF_INIT *init, UDF_ARGS *args, char *is_null, char *error) {
    (void)init;
    (void)is_null;
    long long n = *(long long *)args->args[0];
    if (n <= 0 || (size_t)n / 16 > MAX_KEPT - nkept) {
        *error = 1;
        return 0;
    }
    /* All first, then the frees: freed regions are not reused in between. */
    void **all = malloc((size_t)n * sizeof *all);
    if (!all) {
        *error = 1;
        return 0;
    }
    for (long long i = 0; i < n; i++)
        all[i] = jemsafe_frag_alloc_1k();
    long long bytes = 0;
    for (long long i = 0; i < n; i++) {
        if (i % 16 == 0 && all[i]) {
            kept[nkept++] = all[i];
            bytes += FRAGMENT_REQUEST;
        } else {
            free(all[i]);
        }
    }
    free(all);
    return bytes;
}

my_bool jemsafe_dense_kb_init(UDF_INIT *init, UDF_ARGS *args, char *message) {
    (void)init;
    return one_int(args, message, "jemsafe_dense_kb");
}

long long jemsafe_dense_kb(UDF_INIT *init, UDF_ARGS *args, char *is_null, char *error) {
    (void)init;
    (void)is_null;
    long long k = *(long long *)args->args[0];
    long long count = k * 1024 / DENSE_REQUEST;
    if (k <= 0 || (size_t)count > MAX_KEPT - nkept) {
        *error = 1;
        return 0;
    }
    long long bytes = 0;
    for (long long i = 0; i < count; i++) {
        void *p = jemsafe_dense_alloc_1536();
        if (p) {
            kept[nkept++] = p;
            bytes += DENSE_REQUEST;
        }
    }
    return bytes;
}
