/* sss_api.c - the SQLite function table for the hot-path extension (see
 * sss_api.h).  SQLITE_CORE keeps sqlite3ext.h from renaming the sqlite3_*
 * functions to table lookups: here they are the real ones. */
#define SQLITE_CORE 1
#include "sqlite3ext.h"
#include "sss_api.h"

static const sqlite3_api_routines api = {
    .bind_blob64 = sqlite3_bind_blob64,
    .bind_double = sqlite3_bind_double,
    .bind_int64 = sqlite3_bind_int64,
    .bind_null = sqlite3_bind_null,
    .bind_parameter_count = sqlite3_bind_parameter_count,
    .bind_parameter_name = sqlite3_bind_parameter_name,
    .bind_text64 = sqlite3_bind_text64,
    .changes64 = sqlite3_changes64,
    .column_blob = sqlite3_column_blob,
    .column_bytes = sqlite3_column_bytes,
    .column_count = sqlite3_column_count,
    .column_double = sqlite3_column_double,
    .column_int64 = sqlite3_column_int64,
    .column_text = sqlite3_column_text,
    .column_type = sqlite3_column_type,
    .db_handle = sqlite3_db_handle,
    .last_insert_rowid = sqlite3_last_insert_rowid,
    .reset = sqlite3_reset,
    .step = sqlite3_step,
    .stmt_busy = sqlite3_stmt_busy,
    .stmt_readonly = sqlite3_stmt_readonly,
    .stmt_status = sqlite3_stmt_status,
};

const void *sss_sqlite_api(void)
{
    return &api;
}

size_t sss_sqlite_api_size(void)
{
    return sizeof(api);
}
