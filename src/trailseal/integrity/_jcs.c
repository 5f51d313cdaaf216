/* RFC 8785 canonical JSON, the common case, quickly: confirming that bytes are canonical
 * (for `trailseal verify`) and writing the canonical bytes of a value (for ingest); and,
 * for ingest's quick parse, whether a parsed value holds every member of its text.
 *
 * Both are sound, not complete; what they do not take on is left to the Python code in
 * trailseal.integrity.canonical, which judges and writes everything.
 *
 * Confirming: an entry is confirmed only when it is certainly the canonical
 * form of the value it holds. Anything outside the common subset (numbers with a
 * fraction, an exponent, "-0" or 16 digits and more; characters outside the Basic
 * Multilingual Plane; nesting deeper than MAX_DEPTH) and anything that is not canonical
 * at all is left unconfirmed, for the Python code to judge. Pure: bytes in, index out.
 *
 * Within the subset, canonical means: no whitespace; strings in UTF-8 with only `"`, `\`
 * and the controls below U+0020 escaped, as \" \\ \b \f \n \r \t or \u00xx (lowercase
 * hex) for the rest; integers without sign or leading zero but a minus; object keys in
 * strictly increasing order of their UTF-16 code units, which for BMP characters is the
 * order of their UTF-8 bytes once escapes are resolved.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

/* Strings are always ready from Python 3.12 on; before, a legacy one may need it. */
#if PY_VERSION_HEX >= 0x030C0000
#define READY(s) 0
#else
#define READY(s) PyUnicode_READY(s)
#endif

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cursor;

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* The bytes of w that are '"', '\\', a control (below 0x20) or outside ASCII, each
 * flagged by its high bit: what a string holds but for plain characters. Exact about
 * whether there is one, and about which is the least significant: (x - ONES * n) & ~x &
 * HIGHS flags every byte of x below n, for n up to 0x80, and may also flag bytes more
 * significant than a flagged one, through the borrow that one leaves. */
static inline uint64_t
special(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    return (((w - ONES * 0x20) & ~w) | ((quote - ONES) & ~quote)
            | ((backslash - ONES) & ~backslash) | w) & HIGHS;
}

/* Eight bytes from p, the first the least significant (so that a flag's borrow only
 * reaches bytes after the one that caused it), on either byte order. */
static inline uint64_t
word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* One string, from its opening quote; 1 when canonical and in the subset. */
static int
string(cursor *c)
{
    const unsigned char *p = c->p + 1, *end = c->end;
    while (p < end) {
        /* Plain characters eight at a time, up to the first byte that is not one. */
        if (end - p >= 8) {
            uint64_t found = special(word(p));
            if (!found) {
                p += 8;
                continue;
            }
            p += __builtin_ctzll(found) >> 3;
        }
        unsigned char b = *p;
        if (b == '"') {
            c->p = p + 1;
            return 1;
        }
        if (b == '\\') {
            if (end - p < 2)
                return 0;
            switch (p[1]) {
            case '"': case '\\': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u': {
                /* Only \u00xx for a control that has no short form, lowercase hex. */
                if (end - p < 6 || p[2] != '0' || p[3] != '0' || (p[4] != '0' && p[4] != '1'))
                    return 0;
                unsigned char h = p[5];
                int low;
                if (h >= '0' && h <= '9')
                    low = h - '0';
                else if (h >= 'a' && h <= 'f')
                    low = h - 'a' + 10;
                else
                    return 0;
                int code = (p[4] - '0') * 16 + low;
                if (code == 0x08 || code == 0x09 || code == 0x0a || code == 0x0c || code == 0x0d)
                    return 0;
                p += 6;
                continue;
            }
            default:
                return 0;
            }
        }
        if (b < 0x20)
            return 0;
        if (b < 0x80) {
            p++;
            continue;
        }
        /* UTF-8, two or three bytes; no surrogates, nothing overlong; four → unconfirmed. */
        if (b >= 0xc2 && b <= 0xdf) {
            if (end - p < 2 || (p[1] & 0xc0) != 0x80)
                return 0;
            p += 2;
            continue;
        }
        if (b >= 0xe0 && b <= 0xef) {
            if (end - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
                return 0;
            if (b == 0xe0 && p[1] < 0xa0)
                return 0;
            if (b == 0xed && p[1] > 0x9f)
                return 0;
            p += 3;
            continue;
        }
        return 0;
    }
    return 0;
}

/* The next byte of a confirmed string's content with escapes resolved; *p moves on. */
static unsigned char
unit(const unsigned char **p)
{
    const unsigned char *q = *p;
    if (*q != '\\') {
        *p = q + 1;
        return *q;
    }
    switch (q[1]) {
    case 'b': *p = q + 2; return 0x08;
    case 'f': *p = q + 2; return 0x0c;
    case 'n': *p = q + 2; return 0x0a;
    case 'r': *p = q + 2; return 0x0d;
    case 't': *p = q + 2; return 0x09;
    case 'u': {
        unsigned char h = q[5];
        *p = q + 6;
        return (unsigned char)((q[4] - '0') * 16 + (h <= '9' ? h - '0' : h - 'a' + 10));
    }
    default: *p = q + 2; return q[1]; /* \" or \\ */
    }
}

/* Compare two confirmed strings (each from its opening quote) by content: <0, 0, >0. */
static int
compare(const unsigned char *a, const unsigned char *b)
{
    a++;
    b++;
    for (;;) {
        int a_done = *a == '"', b_done = *b == '"';
        if (a_done || b_done)
            return a_done - b_done ? (a_done ? -1 : 1) : 0;
        unsigned char x = unit(&a), y = unit(&b);
        if (x != y)
            return x < y ? -1 : 1;
    }
}

static int value(cursor *c, int depth);

static int
number(cursor *c)
{
    const unsigned char *p = c->p, *end = c->end;
    if (*p == '-')
        p++;
    const unsigned char *digits = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    Py_ssize_t n = p - digits;
    if (n == 0 || n > 15 || (n > 1 && *digits == '0'))
        return 0;
    if (n == 1 && *digits == '0' && digits != c->p)
        return 0; /* -0 */
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return 0;
    c->p = p;
    return 1;
}

static int
literal(cursor *c, const char *word, Py_ssize_t n)
{
    if (c->end - c->p < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

static int
object(cursor *c, int depth)
{
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    const unsigned char *previous = NULL;
    for (;;) {
        if (c->p >= c->end || *c->p != '"')
            return 0;
        const unsigned char *key = c->p;
        if (!string(c))
            return 0;
        if (previous != NULL && compare(previous, key) >= 0)
            return 0;
        previous = key;
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        if (!value(c, depth))
            return 0;
        if (c->p >= c->end)
            return 0;
        if (*c->p == '}') {
            c->p++;
            return 1;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
    }
}

static int
array(cursor *c, int depth)
{
    c->p++;
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 1;
    }
    for (;;) {
        if (!value(c, depth))
            return 0;
        if (c->p >= c->end)
            return 0;
        if (*c->p == ']') {
            c->p++;
            return 1;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
    }
}

static int
value(cursor *c, int depth)
{
    if (c->p >= c->end)
        return 0;
    switch (*c->p) {
    case '{': return depth < MAX_DEPTH && object(c, depth + 1);
    case '[': return depth < MAX_DEPTH && array(c, depth + 1);
    case '"': return string(c);
    case 't': return literal(c, "true", 4);
    case 'f': return literal(c, "false", 5);
    case 'n': return literal(c, "null", 4);
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
            return number(c);
        return 0;
    }
}

static int
confirmed(const char *data, Py_ssize_t size)
{
    cursor c = {(const unsigned char *)data, (const unsigned char *)data + size};
    return value(&c, 0) && c.p == c.end;
}

/* -- writing ---------------------------------------------------------------------------
 *
 * canonicalize(value, max_depth) writes the exact types dict (str keys), list, str, int
 * (within ±(2**53 - 1)), bool and None, nested at most max_depth containers deep, as
 * RFC 8785 does (and at most MAX_DEPTH). Anything else — a float (ECMAScript's number format), a subclass, a key
 * outside the Basic Multilingual Plane (UTF-16 order), a lone surrogate, an integer out
 * of range, nesting too deep — returns None, and the Python code writes the value or
 * raises its precise error. No Python code runs while a value is written: exact types
 * only, so nothing can change the value under the writer.
 */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    int on_heap; /* buf starts on the caller's stack and moves to the heap to grow */
} out_t;

#define DEFER 0
#define DONE 1
#define FAILED (-1)

static int
reserve(out_t *o, Py_ssize_t n)
{
    if (o->len + n <= o->cap)
        return DONE;
    Py_ssize_t cap = o->cap;
    while (cap < o->len + n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return FAILED;
        }
        cap *= 2;
    }
    char *grown = o->on_heap ? PyMem_Realloc(o->buf, cap) : PyMem_Malloc(cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    if (!o->on_heap)
        memcpy(grown, o->buf, o->len);
    o->buf = grown;
    o->cap = cap;
    o->on_heap = 1;
    return DONE;
}

static int
put(out_t *o, const char *s, Py_ssize_t n)
{
    if (reserve(o, n) != DONE)
        return FAILED;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return DONE;
}

static const char HEX[] = "0123456789abcdef";

/* 1 for the ASCII characters a JSON string must escape: controls, `"` and `\`. */
static const unsigned char ESCAPED[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int
write_str(out_t *o, PyObject *s, int is_key)
{
    if (READY(s) < 0)
        return FAILED;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (is_key && kind == PyUnicode_4BYTE_KIND)
        return DEFER; /* holds a character outside the BMP: UTF-16 order differs */
    /* At most 6 bytes out per character (\u00xx), plus the quotes. */
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || reserve(o, n * 6 + 2) != DONE)
        return FAILED;
    char *w = o->buf + o->len;
    *w++ = '"';
    Py_ssize_t i = 0;
    if (PyUnicode_IS_ASCII(s)) {
        /* The common case: copy the run of characters that need no escape at once. */
        const unsigned char *a = data;
        while (i < n && !ESCAPED[a[i]])
            i++;
        memcpy(w, a, i);
        w += i;
    }
    for (; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) {
            if (!ESCAPED[c]) {
                *w++ = (char)c;
                continue;
            }
            *w++ = '\\';
            switch (c) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case 0x08: *w++ = 'b'; break;
            case 0x0c: *w++ = 'f'; break;
            case 0x0a: *w++ = 'n'; break;
            case 0x0d: *w++ = 'r'; break;
            case 0x09: *w++ = 't'; break;
            default:
                *w++ = 'u'; *w++ = '0'; *w++ = '0';
                *w++ = HEX[c >> 4]; *w++ = HEX[c & 0xf];
            }
        } else if (c < 0x800) {
            *w++ = (char)(0xc0 | (c >> 6));
            *w++ = (char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            if (c >= 0xd800 && c <= 0xdfff)
                return DEFER; /* a lone surrogate: no UTF-8 form */
            *w++ = (char)(0xe0 | (c >> 12));
            *w++ = (char)(0x80 | ((c >> 6) & 0x3f));
            *w++ = (char)(0x80 | (c & 0x3f));
        } else {
            *w++ = (char)(0xf0 | (c >> 18));
            *w++ = (char)(0x80 | ((c >> 12) & 0x3f));
            *w++ = (char)(0x80 | ((c >> 6) & 0x3f));
            *w++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return DONE;
}

static int write_value(out_t *o, PyObject *v, int depth, int max_depth);

/* Code-point order of two exact str keys of the BMP, which is their UTF-16 order. */
static int
key_order(PyObject *x, PyObject *y)
{
    if (PyUnicode_KIND(x) == PyUnicode_1BYTE_KIND && PyUnicode_KIND(y) == PyUnicode_1BYTE_KIND) {
        Py_ssize_t nx = PyUnicode_GET_LENGTH(x), ny = PyUnicode_GET_LENGTH(y);
        int c = memcmp(PyUnicode_DATA(x), PyUnicode_DATA(y), nx < ny ? nx : ny);
        return c ? c : (nx > ny) - (nx < ny);
    }
    return PyUnicode_Compare(x, y); /* exact str: no Python code runs */
}

#define SMALL_DICT 32

static int
write_dict(out_t *o, PyObject *d, int depth, int max_depth)
{
    if (depth > max_depth)
        return DEFER;
    Py_ssize_t n = PyDict_GET_SIZE(d);
    PyObject *small[2 * SMALL_DICT];
    PyObject **pairs = small;
    if (n > SMALL_DICT) {
        pairs = PyMem_Malloc(sizeof(PyObject *) * 2 * n);
        if (pairs == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
    }
    int result = DONE;
    /* Borrowed references: no Python code runs until the dict is written, so it cannot
     * change underneath. Keys in order by insertion sort (events have a handful). */
    Py_ssize_t pos = 0, count = 0;
    PyObject *key, *item;
    while (PyDict_Next(d, &pos, &key, &item)) {
        if (!PyUnicode_CheckExact(key) || READY(key) < 0 ||
            PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND) {
            result = DEFER; /* not a str, or a key outside the BMP: UTF-16 order differs */
            goto done;
        }
        Py_ssize_t at = count++;
        while (at > 0 && key_order(pairs[2 * (at - 1)], key) > 0) {
            pairs[2 * at] = pairs[2 * (at - 1)];
            pairs[2 * at + 1] = pairs[2 * (at - 1) + 1];
            at--;
        }
        pairs[2 * at] = key;
        pairs[2 * at + 1] = item;
    }
    if (PyErr_Occurred()) {
        result = FAILED;
        goto done;
    }
    if (put(o, "{", 1) != DONE) {
        result = FAILED;
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i && put(o, ",", 1) != DONE) {
            result = FAILED;
            goto done;
        }
        result = write_str(o, pairs[2 * i], 1);
        if (result != DONE)
            goto done;
        if (put(o, ":", 1) != DONE) {
            result = FAILED;
            goto done;
        }
        result = write_value(o, pairs[2 * i + 1], depth + 1, max_depth);
        if (result != DONE)
            goto done;
    }
    result = put(o, "}", 1);
done:
    if (pairs != small)
        PyMem_Free(pairs);
    return result;
}

static int
write_list(out_t *o, PyObject *l, int depth, int max_depth)
{
    if (depth > max_depth)
        return DEFER;
    if (put(o, "[", 1) != DONE)
        return FAILED;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(l); i++) {
        if (i && put(o, ",", 1) != DONE)
            return FAILED;
        int result = write_value(o, PyList_GET_ITEM(l, i), depth + 1, max_depth);
        if (result != DONE)
            return result;
    }
    return put(o, "]", 1);
}

static int
write_value(out_t *o, PyObject *v, int depth, int max_depth)
{
    if (v == Py_None)
        return put(o, "null", 4);
    if (v == Py_True)
        return put(o, "true", 4);
    if (v == Py_False)
        return put(o, "false", 5);
    if (PyUnicode_CheckExact(v))
        return write_str(o, v, 0);
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return FAILED;
        if (overflow || x > 9007199254740991LL || x < -9007199254740991LL)
            return DEFER;
        char digits[24];
        int n = snprintf(digits, sizeof digits, "%lld", x);
        return put(o, digits, n);
    }
    if (PyDict_CheckExact(v))
        return write_dict(o, v, depth, max_depth);
    if (PyList_CheckExact(v))
        return write_list(o, v, depth, max_depth);
    return DEFER;
}

PyDoc_STRVAR(canonicalize_doc,
"canonicalize(value, max_depth, /) -> bytes | None\n\n"
"The RFC 8785 bytes of value, or None when the Python code must write it (or refuse it).");

static PyObject *
py_canonicalize(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "canonicalize(value, max_depth)");
        return NULL;
    }
    int overflow = 0;
    long max_depth = PyLong_AsLongAndOverflow(args[1], &overflow);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    /* The writer recurses on the C stack: deeper values are left to the Python code. */
    if (overflow > 0 || max_depth > MAX_DEPTH)
        max_depth = MAX_DEPTH;
    if (Py_EnterRecursiveCall(" in canonicalize"))
        return NULL;
    char first[8192];
    out_t o = {first, 0, sizeof first, 0};
    int result = write_value(&o, args[0], 1, (int)max_depth);
    Py_LeaveRecursiveCall();
    PyObject *answer = NULL;
    if (result == DONE)
        answer = PyBytes_FromStringAndSize(o.buf, o.len);
    else if (result == DEFER)
        answer = Py_NewRef(Py_None);
    if (o.on_heap)
        PyMem_Free(o.buf);
    return answer;
}

PyDoc_STRVAR(first_unconfirmed_doc,
"first_unconfirmed(entries, start=0, /) -> int\n\n"
"The index of the first of entries (bytes), from start on, not confirmed canonical;\n"
"len(entries) when every one is.");

static PyObject *
first_unconfirmed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "first_unconfirmed(entries, start=0)");
        return NULL;
    }
    if (nargs == 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred())
            return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "entries must be a sequence of bytes");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t i = start < 0 ? 0 : start;
    for (; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "entries must be bytes");
            return NULL;
        }
        if (!confirmed(PyBytes_AS_STRING(items[i]), PyBytes_GET_SIZE(items[i])))
            break;
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(i);
}

/* -- A parsed document's members against its text ------------------------------------
 * Parsers that keep the last of a repeated key cannot say whether the text repeated one.
 * Every member of an object in JSON text is one `:` outside strings, and a parser that
 * drops a repeated key has one member fewer: so a value holds every member of its text
 * exactly when the two counts agree. */

/* The members of every object in v (exact JSON types only); -1 for a float, a type that
 * is not JSON's, or nesting past max_depth. */
static Py_ssize_t
members(PyObject *v, int depth, int max_depth)
{
    if (PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || v == Py_None || PyBool_Check(v))
        return 0;
    if (depth > max_depth)
        return -1;
    Py_ssize_t total = 0, n;
    if (PyDict_CheckExact(v)) {
        PyObject *key, *item;
        Py_ssize_t at = 0;
        total = PyDict_GET_SIZE(v);
        while (PyDict_Next(v, &at, &key, &item)) {
            if (!PyUnicode_CheckExact(key) || (n = members(item, depth + 1, max_depth)) < 0)
                return -1;
            total += n;
        }
        return total;
    }
    if (PyList_CheckExact(v)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            if ((n = members(PyList_GET_ITEM(v, i), depth + 1, max_depth)) < 0)
                return -1;
            total += n;
        }
        return total;
    }
    return -1;
}

/* The `:` outside strings of JSON text (which the caller's parser accepted). */
static Py_ssize_t
colons(const unsigned char *p, const unsigned char *end)
{
    Py_ssize_t count = 0;
    while (p < end) {
        unsigned char ch = *p++;
        if (ch == ':') {
            count++;
        } else if (ch == '"') {
            while (p < end) {
                ch = *p++;
                if (ch == '"')
                    break;
                if (ch == '\\' && p < end)
                    p++;  /* the escaped character, which may be a quote */
            }
        }
    }
    return count;
}

PyDoc_STRVAR(whole_doc,
"whole(text, value, max_depth, /) -> bool\n\n"
"True when value, parsed from the JSON text, holds every member of the text's objects\n"
"(no key repeated), no float, nothing nested past max_depth; False says nothing.");

static PyObject *
whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "whole(text: bytes, value, max_depth)");
        return NULL;
    }
    long max_depth = PyLong_AsLong(args[2]);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    /* members() recurses on the C stack. */
    if (max_depth > MAX_DEPTH)
        max_depth = MAX_DEPTH;
    if (Py_EnterRecursiveCall(" in whole"))
        return NULL;
    Py_ssize_t found = members(args[1], 1, (int)max_depth);
    Py_LeaveRecursiveCall();
    const unsigned char *text = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    return PyBool_FromLong(
        found >= 0 && found == colons(text, text + PyBytes_GET_SIZE(args[0])));
}

static PyMethodDef methods[] = {
    {"canonicalize", (PyCFunction)(void (*)(void))py_canonicalize, METH_FASTCALL,
     canonicalize_doc},
    {"whole", (PyCFunction)(void (*)(void))whole, METH_FASTCALL, whole_doc},
    {"first_unconfirmed", (PyCFunction)(void (*)(void))first_unconfirmed, METH_FASTCALL,
     first_unconfirmed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jcs",
    "RFC 8785 canonical JSON, the common case, quickly (sound, not complete).", -1, methods,
};

PyMODINIT_FUNC
PyInit__jcs(void)
{
    return PyModule_Create(&module);
}
