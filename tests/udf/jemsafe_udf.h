/*
 * The UDF structures of MariaDB/MySQL (mysql_com.h's layout, unchanged since MySQL 5.0),
 * declared here so that the project's test UDFs need no development package.
 */
#ifndef JEMSAFE_UDF_H
#define JEMSAFE_UDF_H

typedef char my_bool;
enum Item_result { STRING_RESULT = 0, REAL_RESULT, INT_RESULT, ROW_RESULT, DECIMAL_RESULT };

typedef struct st_udf_args {
    unsigned int arg_count;
    enum Item_result *arg_type;
    char **args;
    unsigned long *lengths;
    char *maybe_null;
    const char **attributes;
    unsigned long *attribute_lengths;
    void *extension;
} UDF_ARGS;

typedef struct st_udf_init {
    my_bool maybe_null;
    unsigned int decimals;
    unsigned long max_length;
    char *ptr;
    my_bool const_item;
    void *extension;
} UDF_INIT;

#endif
