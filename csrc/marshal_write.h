/*
 * marshal_write.h - appending values to an sss_buffer in CPython's marshal
 * wire format (see marshal_format.h).  Shared by rows.c (result rows) and
 * changeset.c (changes, conflicts).  Every writer returns 0 on success and -1
 * when the buffer cannot grow.
 */
#ifndef SSS_MARSHAL_WRITE_H
#define SSS_MARSHAL_WRITE_H

#include "sss.h"

int sss_put_int64(sss_buffer *out, sqlite3_int64 v);
int sss_put_double(sss_buffer *out, double d);
/* 'code' followed by an int32 length and the bytes (M_STRING, M_UNICODE). */
int sss_put_bytes(sss_buffer *out, char code, const void *data, int n);
/* UTF-8 text: the short ASCII form when it fits, else M_UNICODE. */
int sss_put_text(sss_buffer *out, const unsigned char *s, int n);
/* One byte (M_NONE, M_TRUE, M_FALSE, '.' for Ellipsis, ...). */
int sss_put_code(sss_buffer *out, char code);
/* A tuple header for n items (the short form below 256). */
int sss_put_tuple_header(sss_buffer *out, int n);
/* A protected sqlite3_value (changeset iterators, user functions). */
int sss_put_value(sss_buffer *out, sqlite3_value *v);

#endif
