/* Confirm that byte strings are RFC 8785 canonical JSON, quickly, for `trailseal verify`.
 *
 * Sound, not complete: an entry is confirmed only when it is certainly the canonical
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
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cursor;

/* One string, from its opening quote; 1 when canonical and in the subset. */
static int
string(cursor *c)
{
    const unsigned char *p = c->p + 1, *end = c->end;
    while (p < end) {
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

static PyMethodDef methods[] = {
    {"first_unconfirmed", (PyCFunction)(void (*)(void))first_unconfirmed, METH_FASTCALL,
     first_unconfirmed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jcs",
    "Confirm RFC 8785 canonical JSON quickly (sound, not complete).", -1, methods,
};

PyMODINIT_FUNC
PyInit__jcs(void)
{
    return PyModule_Create(&module);
}
