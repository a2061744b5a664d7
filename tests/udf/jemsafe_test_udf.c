/*
 * jemsafe's test UDF for MariaDB/MySQL: memory used on request, inside mysqld, with
 * malloc (so through the preloaded jemalloc, sampled by its heap profiler).
 *
 *   CREATE FUNCTION jemsafe_alloc_mb RETURNS INTEGER SONAME 'jemsafe_test_udf.so';
 *   SELECT jemsafe_alloc_mb(64);   -- 64 MiB more, touched, kept; returns MiB kept in all
 *
 * Functions (each an INTEGER function of one INTEGER argument):
 *   jemsafe_alloc_mb(n)     allocates and touches n MiB in 1 MiB mallocs and keeps them
 *   jemsafe_free_mb(n)      frees up to n MiB of those (newest first); returns MiB kept
 *   jemsafe_leak_kb(n)      leaks n KiB as 1 KiB mallocs from jemsafe_test_leak_site()
 * (Fragmenting and dense allocations are jemsafe_frag_udf.c's, for tests/fragmentation.rs.)
 * Each returns what the function now keeps in all (MiB for alloc/free, KiB otherwise).
 *
 * To add a function: write NAME_init (argument check), NAME and NAME_deinit with the
 * UDF_FUNCTION macro below and document it above; the tests CREATE FUNCTION it by name.
 * The structs are declared here (MariaDB's ABI, unchanged since MySQL 5.0) so that no
 * development package is needed.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "jemsafe_udf.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* A singly linked list of kept blocks; the link lives in the block itself. */
struct block { struct block *next; };

static struct block *mb_blocks;     /* jemsafe_alloc_mb, 1 MiB each */
static long long mb_kept;
static long long kb_leaked;

/* The argument as a count, 0 for NULL or negative. */
static long long count_arg(UDF_ARGS *args) {
    if (args->arg_count < 1 || args->args[0] == NULL) return 0;
    long long n = *(long long *)args->args[0];
    return n < 0 ? 0 : n;
}

static my_bool one_int(UDF_ARGS *args, char *message, const char *name) {
    if (args->arg_count != 1) {
        strcpy(message, "expects one integer argument");
        (void)name;
        return 1;
    }
    args->arg_type[0] = INT_RESULT;
    return 0;
}

#define UDF_FUNCTION(name)                                                      \
    my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {     \
        initid->maybe_null = 0;                                                 \
        return one_int(args, message, #name);                                   \
    }                                                                           \
    void name##_deinit(UDF_INIT *initid) { (void)initid; }                      \
    long long name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)

UDF_FUNCTION(jemsafe_alloc_mb) {
    (void)initid; (void)is_null;
    long long n = count_arg(args);
    pthread_mutex_lock(&lock);
    for (long long i = 0; i < n; i++) {
        struct block *b = malloc(1 << 20);
        if (b == NULL) { *error = 1; break; }
        memset(b, 0x5a, 1 << 20); /* resident, not only reserved */
        b->next = mb_blocks;
        mb_blocks = b;
        mb_kept++;
    }
    long long kept = mb_kept;
    pthread_mutex_unlock(&lock);
    return kept;
}

UDF_FUNCTION(jemsafe_free_mb) {
    (void)initid; (void)is_null; (void)error;
    long long n = count_arg(args);
    pthread_mutex_lock(&lock);
    for (long long i = 0; i < n && mb_blocks != NULL; i++) {
        struct block *b = mb_blocks;
        mb_blocks = b->next;
        free(b);
        mb_kept--;
    }
    long long kept = mb_kept;
    pthread_mutex_unlock(&lock);
    return kept;
}

/* Not inlined, with a name of its own: the leak's stack in a heap profile. */
__attribute__((noinline)) void *jemsafe_test_leak_site(size_t size) {
    void *p = malloc(size);
    if (p != NULL) memset(p, 0x6c, size);
    return p;
}

UDF_FUNCTION(jemsafe_leak_kb) {
    (void)initid; (void)is_null;
    long long n = count_arg(args);
    pthread_mutex_lock(&lock);
    for (long long i = 0; i < n; i++) {
        if (jemsafe_test_leak_site(1024) == NULL) { *error = 1; break; }
        kb_leaked++;
    }
    long long leaked = kb_leaked;
    pthread_mutex_unlock(&lock);
    return leaked;
}
