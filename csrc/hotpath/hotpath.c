/*
 * hotpath.c - sqlite_session_safe._hotpath: the per-query hot path as a
 * CPython extension.
 *
 * A point query through the cffi helpers pays for marshal.dumps of the
 * parameters, a cffi call, and marshal.loads of the rows.  Here one C-API call
 * binds the parameters straight from the tuple, steps, and builds the row
 * tuples directly.  Only execute()'s first small batch of rows is built here;
 * later batches (iteration, fetchall) keep the marshal path (csrc/rows.c),
 * whose bulk decoding is as fast and has no per-row memory overhead.
 *
 * One SQLite per process: this module does not link SQLite.  It calls the
 * engine linked into the cffi module (_native) through the function table
 * that module hands over (csrc/sss_api.c), SQLite's own loadable-extension
 * layout; until init() has run every other function refuses to work.
 *
 * The GIL is released around the steps of a batch and sqlite3_reset (once per
 * batch: values are copied into a C-side batch, and Python objects are built
 * after the GIL is back), as cffi does for every call: SQLite is built
 * SQLITE_THREADSAFE=1, the connection is opened
 * NOMUTEX, and the Python side holds the connection's own try-lock for the
 * whole call, so no other thread can use the connection meanwhile; user
 * functions and hooks that SQLite calls during a step take the GIL back
 * themselves (cffi callbacks), and Connection.interrupt() from another thread
 * can run.  Binding and column reads touch no file and run with the GIL held.
 *
 * Values are converted exactly as the marshal path does (csrc/rows.c +
 * marshal.loads, csrc/bind.c + marshal.dumps):
 *   result:    NULL -> None, INTEGER -> int, FLOAT -> float,
 *              TEXT -> str (UTF-8, "surrogatepass", as marshal decodes it),
 *              BLOB -> bytes;
 *   parameter: None, bool, exact int (64-bit), exact float, exact str
 *              (UTF-8 without lone surrogates) and exact bytes are bound here.
 * Anything else (other types, subclasses, ints beyond 64 bits, surrogates,
 * the wrong number of parameters, a tuple for named parameters) makes
 * execute() return SSS_FALLBACK before
 * anything ran, and the caller takes the marshal path, which handles every
 * case and raises the precise error.  A value SQLite itself refuses to bind
 * (SQLITE_TOOBIG) is returned as that error code, as the marshal path does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sss.h"
#include "sqlite3ext.h"

/* sqlite3ext.h turns every sqlite3_* call below into sqlite3_api->... */
static const sqlite3_api_routines *sqlite3_api;

/* Returned by execute() when the parameters need the marshal path. */
#define SSS_FALLBACK (-7)

static int check_ready(void)
{
    if (sqlite3_api == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "sqlite_session_safe._hotpath.init() has not run");
        return -1;
    }
    return 0;
}

/* The statement at address obj.  0 (a finalized statement) is passed on as
 * NULL: SQLite's API armor then answers SQLITE_MISUSE, as it does when the
 * cffi helpers get a NULL handle.  -1 with an exception set on a bad obj. */
static int stmt_arg(PyObject *obj, sqlite3_stmt **out)
{
    void *p = PyLong_AsVoidPtr(obj);
    if (p == NULL && PyErr_Occurred())
        return -1;
    *out = (sqlite3_stmt *)p;
    return 0;
}

/* Binds one parameter; 0 on success, SSS_FALLBACK for a value the marshal
 * path must handle, or a SQLite error code from the bind call. */
static int bind_one(sqlite3_stmt *stmt, int i, PyObject *v)
{
    if (v == Py_None)
        return sqlite3_bind_null(stmt, i);
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyLong_Type) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return SSS_FALLBACK;
        return sqlite3_bind_int64(stmt, i, x);
    }
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) { /* lone surrogates: marshal encodes them "surrogatepass" */
            PyErr_Clear();
            return SSS_FALLBACK;
        }
        return sqlite3_bind_text64(stmt, i, s, (sqlite3_uint64)n, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    }
    if (t == &PyFloat_Type)
        return sqlite3_bind_double(stmt, i, PyFloat_AS_DOUBLE(v));
    if (t == &PyBytes_Type)
        return sqlite3_bind_blob64(stmt, i, PyBytes_AS_STRING(v),
                                   (sqlite3_uint64)PyBytes_GET_SIZE(v), SQLITE_TRANSIENT);
    if (t == &PyBool_Type)
        return sqlite3_bind_int64(stmt, i, v == Py_True);
    return SSS_FALLBACK;
}

/* Binds a tuple or list of parameters (NULL: none).  0, SSS_FALLBACK, or a
 * SQLite error code from a bind call. */
static int bind_params(sqlite3_stmt *stmt, PyObject *params)
{
    int count = sqlite3_bind_parameter_count(stmt);
    if (params == NULL)
        return count == 0 ? 0 : SSS_FALLBACK;
    if (!PyTuple_CheckExact(params) && !PyList_CheckExact(params))
        return SSS_FALLBACK;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(params);
    if (n != count)
        return SSS_FALLBACK;
    if (PyTuple_CheckExact(params)) {
        /* A tuple for named parameters (:x, @x, $x) takes the packed path,
         * where the DB-API face warns as the stdlib does (3.12+).  The
         * native cursor hands a dict over as a list (Statement.mapping_to_row),
         * which stays here; a ?-only statement has no names (NULL, cheap). */
        for (Py_ssize_t i = 0; i < n; i++) {
            const char *name = sqlite3_bind_parameter_name(stmt, (int)i + 1);
            if (name != NULL && name[0] != '?')
                return SSS_FALLBACK;
        }
    }
    PyObject **items = PySequence_Fast_ITEMS(params);
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = bind_one(stmt, (int)i + 1, items[i]);
        if (rc != SQLITE_OK)
            return rc;
    }
    return 0;
}

/* --- rows ----------------------------------------------------------------
 *
 * A batch is stepped with the GIL released once: each row's values are
 * copied into a C-side batch (cells, and the bytes of text and blobs), and
 * the Python objects are built afterwards, with the GIL.  A point query thus
 * releases the GIL once for both of its steps and the reset. */

typedef struct {
    int type; /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL */
    int n;    /* text and blob: length in bytes */
    union {
        sqlite3_int64 i;
        double d;
        size_t off; /* text and blob: offset into batch.bytes */
    } v;
} cell;

typedef struct {
    cell *cells;
    size_t ncells, capcells;
    char *bytes;
    size_t nbytes, capbytes;
    /* Inline storage: a point query allocates nothing. */
    cell cells_inline[16];
    char bytes_inline[512];
} batch;

static void batch_init(batch *b)
{
    b->cells = b->cells_inline;
    b->ncells = 0;
    b->capcells = sizeof(b->cells_inline) / sizeof(cell);
    b->bytes = b->bytes_inline;
    b->nbytes = 0;
    b->capbytes = sizeof(b->bytes_inline);
}

static void batch_free(batch *b)
{
    if (b->cells != b->cells_inline)
        PyMem_RawFree(b->cells);
    if (b->bytes != b->bytes_inline)
        PyMem_RawFree(b->bytes);
}

/* An inline-or-heap array grown to hold `need` items: the (possibly new)
 * array, or NULL when out of memory (the old one is then unchanged).  Runs
 * without the GIL (PyMem_Raw*). */
static void *grow(void *data, size_t *cap, size_t need, size_t item, void *inline_data)
{
    if (need <= *cap)
        return data;
    size_t cap2 = *cap * 2 > need ? *cap * 2 : need;
    if (cap2 > PY_SSIZE_T_MAX / item)
        return NULL;
    void *p = data == inline_data ? PyMem_RawMalloc(cap2 * item) : PyMem_RawRealloc(data, cap2 * item);
    if (p == NULL)
        return NULL;
    if (data == inline_data)
        memcpy(p, inline_data, *cap * item);
    *cap = cap2;
    return p;
}

/* Copies the current row's values into b; 0, or -1 when out of memory
 * (SQLite's or ours).  No GIL. */
static int copy_row(sqlite3_stmt *stmt, int ncols, batch *b)
{
    cell *cells = grow(b->cells, &b->capcells, b->ncells + (size_t)ncols, sizeof(cell),
                       b->cells_inline);
    if (cells == NULL)
        return -1;
    b->cells = cells;
    for (int i = 0; i < ncols; i++) {
        cell *c = &b->cells[b->ncells++];
        c->type = sqlite3_column_type(stmt, i);
        switch (c->type) {
        case SQLITE_INTEGER:
            c->v.i = sqlite3_column_int64(stmt, i);
            break;
        case SQLITE_FLOAT:
            c->v.d = sqlite3_column_double(stmt, i);
            break;
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
            const void *data = c->type == SQLITE_TEXT ? (const void *)sqlite3_column_text(stmt, i)
                                                      : sqlite3_column_blob(stmt, i);
            int n = sqlite3_column_bytes(stmt, i);
            /* NULL text is SQLite out of memory; a NULL blob is empty. */
            if (data == NULL && (n || c->type == SQLITE_TEXT))
                return -1;
            char *bytes = grow(b->bytes, &b->capbytes, b->nbytes + (size_t)n, 1, b->bytes_inline);
            if (bytes == NULL)
                return -1;
            b->bytes = bytes;
            if (n)
                memcpy(b->bytes + b->nbytes, data, (size_t)n);
            c->n = n;
            c->v.off = b->nbytes;
            b->nbytes += (size_t)n;
            break;
        }
        default:
            c->type = SQLITE_NULL;
        }
    }
    return 0;
}

/* One value of the batch as a Python object (new reference), or NULL with an
 * exception set (UnicodeDecodeError for text that is not UTF-8). */
static PyObject *cell_value(const batch *b, const cell *c)
{
    switch (c->type) {
    case SQLITE_INTEGER:
        return PyLong_FromLongLong(c->v.i);
    case SQLITE_FLOAT:
        return PyFloat_FromDouble(c->v.d);
    case SQLITE_TEXT:
        /* As marshal.loads decodes what csrc/rows.c writes. */
        return PyUnicode_DecodeUTF8(b->bytes + c->v.off, c->n, "surrogatepass");
    case SQLITE_BLOB:
        return PyBytes_FromStringAndSize(b->bytes + c->v.off, c->n);
    default:
        return Py_NewRef(Py_None);
    }
}

/* Records on the pending UnicodeDecodeError (attribute sss_column) which
 * column's text was not UTF-8: the DB-API face names the column in the
 * stdlib's message for it.  Runs only on that error. */
static void note_column(int column)
{
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
#endif
    PyObject *index = exc != NULL ? PyLong_FromLong(column) : NULL;
    if (index == NULL || PyObject_SetAttrString(exc, "sss_column", index) < 0)
        PyErr_Clear(); /* the decode error itself is the one to report */
    Py_XDECREF(index);
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (tb != NULL)
        PyException_SetTraceback(exc, tb);
    PyErr_Restore(type, exc, tb);
#endif
}

/* The batch's rows as a list of tuples, or NULL with an exception set. */
static PyObject *batch_rows(const batch *b, long nrows, int ncols)
{
    PyObject *rows = PyList_New(nrows);
    if (rows == NULL)
        return NULL;
    const cell *c = b->cells;
    for (long r = 0; r < nrows; r++) {
        PyObject *row = PyTuple_New(ncols);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(rows, r, row);
        for (int i = 0; i < ncols; i++, c++) {
            PyObject *v = cell_value(b, c);
            if (v == NULL) {
                note_column(i);
                goto fail;
            }
            PyTuple_SET_ITEM(row, i, v);
        }
    }
    return rows;
fail:
    Py_DECREF(rows);
    return NULL;
}

static void reset_nogil(sqlite3_stmt *stmt)
{
    Py_BEGIN_ALLOW_THREADS
    sqlite3_reset(stmt);
    Py_END_ALLOW_THREADS
}

/* reset_nogil() while an exception is set.  The reset may call back into
 * Python (the finalize() of a user window function whose frame is still
 * open), and Python code must never run with an exception pending: the first
 * C call inside it would fail with SystemError ("returned a result with an
 * exception set"), and the callback's error handling would then clear the
 * exception this call is about to raise. */
static void reset_keeping_error(sqlite3_stmt *stmt)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    reset_nogil(stmt);
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    reset_nogil(stmt);
    PyErr_Restore(type, value, tb);
#endif
}

/* Steps stmt up to max_rows times (stopping early once the rows hold about
 * max_bytes) and stores the rows, a new list, in *out.  Returns SQLITE_ROW
 * when more rows may follow, SQLITE_DONE or an error code (the statement is
 * then reset), or -1 with an exception set (the statement is reset too). */
static int fill(sqlite3_stmt *stmt, long max_rows, size_t max_bytes, PyObject **out)
{
    batch b;
    batch_init(&b);
    long nrows = 0;
    int ncols = 0;
    int rc = SQLITE_ROW;
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    while (nrows < max_rows && b.nbytes + 8 * b.ncells < max_bytes) {
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
            break;
        if (nrows == 0) /* after the first step: a re-prepare may change the columns */
            ncols = sqlite3_column_count(stmt);
        if (copy_row(stmt, ncols, &b)) {
            nomem = 1;
            break;
        }
        nrows++;
    }
    if (rc != SQLITE_ROW || nomem)
        sqlite3_reset(stmt); /* finished or failed: stop holding the read transaction */
    Py_END_ALLOW_THREADS
    if (nomem) {
        batch_free(&b);
        /* The marshal path's message for the same failure (cursor.py). */
        PyErr_SetString(PyExc_MemoryError, "out of memory while reading rows");
        return -1;
    }
    PyObject *rows = batch_rows(&b, nrows, ncols);
    batch_free(&b);
    if (rows == NULL) {
        if (rc == SQLITE_ROW)
            reset_keeping_error(stmt);
        return -1;
    }
    *out = rows;
    return rc;
}

static PyObject *hot_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "init(api_address, api_size)");
        return NULL;
    }
    void *api = PyLong_AsVoidPtr(args[0]);
    if (api == NULL)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "NULL API table");
    size_t size = PyLong_AsSize_t(args[1]);
    if (size == (size_t)-1 && PyErr_Occurred())
        return NULL;
    if (size != sizeof(sqlite3_api_routines)) {
        return PyErr_Format(PyExc_ImportError,
                            "the SQLite function table has %zu bytes, this build expects %zu: "
                            "_native and _hotpath come from different builds",
                            size, sizeof(sqlite3_api_routines));
    }
    sqlite3_api = (const sqlite3_api_routines *)api;
    Py_RETURN_NONE;
}

static PyObject *pack4(int rc, PyObject *rows, PyObject *changes, PyObject *last)
{
    PyObject *result = PyTuple_New(4);
    PyObject *code = PyLong_FromLong(rc);
    if (result == NULL || code == NULL || changes == NULL || last == NULL) {
        Py_XDECREF(result);
        Py_XDECREF(code);
        Py_XDECREF(rows);
        Py_XDECREF(changes);
        Py_XDECREF(last);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, code);
    PyTuple_SET_ITEM(result, 1, rows);
    PyTuple_SET_ITEM(result, 2, changes);
    PyTuple_SET_ITEM(result, 3, last);
    return result;
}

/* execute(stmt, params, max_rows, max_bytes) -> (rc, rows, changes, last_rowid)
 * See hotpath.pyi. */
static PyObject *hot_execute(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "execute(stmt, params, max_rows, max_bytes)");
        return NULL;
    }
    if (check_ready() < 0)
        return NULL;
    sqlite3_stmt *stmt;
    if (stmt_arg(args[0], &stmt) < 0)
        return NULL;
    long max_rows = PyLong_AsLong(args[2]);
    if (max_rows == -1 && PyErr_Occurred())
        return NULL;
    size_t max_bytes = PyLong_AsSize_t(args[3]);
    if (max_bytes == (size_t)-1 && PyErr_Occurred())
        return NULL;
    PyObject *params = args[1] == Py_None ? NULL : args[1];

    if (sqlite3_stmt_busy(stmt)) /* finished statements were reset already */
        reset_nogil(stmt);
    /* A value this code does not bind goes to the marshal path, which binds
     * again and names the failing parameter.  A value SQLite refuses
     * (SQLITE_TOOBIG, ...) is reported here, as the marshal path reports it
     * (sss_execute returns the bind's code; the caller raises from
     * sqlite3_errmsg): marshal cannot even pack a str or bytes over 2 GiB, so
     * falling back would turn SQLite's error into "unmarshallable object". */
    int rc = bind_params(stmt, params);
    if (rc != SQLITE_OK)
        return pack4(rc, Py_NewRef(Py_None), Py_NewRef(Py_None), Py_NewRef(Py_None));

    int reprepares = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
    PyObject *rows = NULL;
    if (sqlite3_column_count(stmt) > 0) {
        rc = fill(stmt, max_rows, max_bytes, &rows);
        if (rc == -1)
            return NULL;
    } else {
        Py_BEGIN_ALLOW_THREADS
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ;
        sqlite3_reset(stmt);
        Py_END_ALLOW_THREADS
        rows = Py_NewRef(Py_None);
    }
    PyObject *changes, *last;
    if (sqlite3_stmt_readonly(stmt)) {
        changes = Py_NewRef(Py_None);
        last = Py_NewRef(Py_None);
    } else {
        sqlite3 *db = sqlite3_db_handle(stmt);
        changes = PyLong_FromLongLong(sqlite3_changes64(db));
        last = PyLong_FromLongLong(sqlite3_last_insert_rowid(db));
    }
    if (sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_REPREPARE, 0) != reprepares)
        rc |= SSS_REPREPARED;
    return pack4(rc, rows, changes, last);
}

/* --- TryLock: the connection lock --------------------------------------
 *
 * Every call into SQLite on a connection holds its lock, and a second thread
 * that calls in meanwhile is refused at once (binding/connection.py, "Thread
 * contract"): the lock is only ever tried, never waited for, and re-entered
 * by callbacks that run SQL on their own connection.  That needs no OS lock:
 * these methods run with the GIL held from start to end, which makes the
 * test-and-set atomic, and they cost a fraction of threading.RLock's
 * acquire(False) (~100 ns), paid twice per query.  While the owner runs
 * inside sqlite3_step without the GIL, the lock stays taken. */

#ifdef Py_GIL_DISABLED
#error "TryLock relies on the GIL; a free-threaded build needs a real lock here"
#endif

typedef struct {
    PyObject_HEAD
    unsigned long owner; /* PyThread_get_thread_ident() of the holder */
    Py_ssize_t count;    /* re-entries; 0: free */
} TryLock;

static PyObject *trylock_acquire(TryLock *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "acquire(blocking=False)");
        return NULL;
    }
    if (nargs == 0 || PyObject_IsTrue(args[0]) != 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "a connection lock is only tried, never waited for: acquire(False)");
        return NULL;
    }
    unsigned long me = PyThread_get_thread_ident();
    if (self->count == 0) {
        self->owner = me;
        self->count = 1;
        Py_RETURN_TRUE;
    }
    if (self->owner == me) {
        self->count++;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *trylock_release(TryLock *self, PyObject *unused)
{
    (void)unused;
    if (self->count == 0 || self->owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    self->count--;
    Py_RETURN_NONE;
}

static PyObject *trylock_is_owned(TryLock *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(self->count > 0 && self->owner == PyThread_get_thread_ident());
}

static PyMethodDef trylock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))trylock_acquire, METH_FASTCALL,
     "acquire(False) -> bool: take the lock if it is free or held by this thread."},
    {"release", (PyCFunction)trylock_release, METH_NOARGS,
     "Undo one acquire(); RuntimeError unless this thread holds the lock."},
    {"is_owned", (PyCFunction)trylock_is_owned, METH_NOARGS,
     "True when this thread holds the lock."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TryLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sqlite_session_safe._hotpath.TryLock",
    .tp_doc = "A re-entrant lock that is only tried, never waited for (atomic under the GIL).",
    .tp_basicsize = sizeof(TryLock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = trylock_methods,
};

static PyMethodDef hot_methods[] = {
    {"init", (PyCFunction)(void (*)(void))hot_init, METH_FASTCALL,
     "init(api_address, api_size): use the SQLite function table of _native."},
    {"execute", (PyCFunction)(void (*)(void))hot_execute, METH_FASTCALL,
     "execute(stmt, params, max_rows, max_bytes) -> (rc, rows, changes, last_rowid)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hot_module = {
    PyModuleDef_HEAD_INIT,
    "sqlite_session_safe._hotpath",
    "The per-query hot path (bind, step, build rows) in C; see csrc/hotpath/hotpath.c.",
    -1,
    hot_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hotpath(void)
{
    if (PyType_Ready(&TryLockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&hot_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "FALLBACK", SSS_FALLBACK) < 0 ||
        PyModule_AddObjectRef(m, "TryLock", (PyObject *)&TryLockType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
