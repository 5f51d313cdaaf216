/* RFC 6962 hashing over many values in one call: leaf hashes, the hash chain, and the
 * levels of a perfect subtree. The same SHA-256 as Python's hashlib (OpenSSL's), without
 * an interpreter round and a digest object per hash: verify, the sequencer and the proofs
 * hash one to three times per event, and there the per-call cost outweighed the hashing.
 * Pure functions of their arguments; trailseal.integrity.hashing holds the same three in
 * Python, which the tests hold these to. */

#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co.: direct, no algorithm fetch */
#include <Python.h>
#include <openssl/sha.h>

#define HASH 32

static const unsigned char LEAF_PREFIX = 0x00, NODE_PREFIX = 0x01;

static void node(const unsigned char *pair, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &NODE_PREFIX, 1);
    SHA256_Update(&ctx, pair, 2 * HASH);
    SHA256_Final(out, &ctx);
}

PyDoc_STRVAR(leaf_hashes_doc,
"leaf_hashes(entries, /)\n--\n\n"
"SHA-256(0x00 || entry) of every entry, concatenated.");

static PyObject *leaf_hashes(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "entries must be a sequence of bytes");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * HASH);
    if (out == NULL) { Py_DECREF(seq); return NULL; }
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(out); Py_DECREF(seq); return NULL;
        }
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &LEAF_PREFIX, 1);
        SHA256_Update(&ctx, view.buf, (size_t)view.len);
        SHA256_Final(at + i * HASH, &ctx);
        PyBuffer_Release(&view);
    }
    Py_DECREF(seq);
    return out;
}

PyDoc_STRVAR(chain_hashes_doc,
"chain_hashes(previous, leaves, /)\n--\n\n"
"The hash chain over concatenated leaf hashes, each SHA-256(chain before || leaf),\n"
"starting from previous; concatenated.");

static PyObject *chain_hashes(PyObject *self, PyObject *args) {
    Py_buffer previous, leaves;
    if (!PyArg_ParseTuple(args, "y*y*:chain_hashes", &previous, &leaves)) return NULL;
    PyObject *out = NULL;
    if (previous.len != HASH) {
        PyErr_SetString(PyExc_ValueError, "previous must be 32 bytes");
    } else if (leaves.len % HASH) {
        PyErr_SetString(PyExc_ValueError, "leaves must be whole 32-byte hashes");
    } else if ((out = PyBytes_FromStringAndSize(NULL, leaves.len)) != NULL) {
        unsigned char *at = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *chain = previous.buf, *leaf = leaves.buf;
        for (Py_ssize_t i = 0; i < leaves.len; i += HASH) {
            SHA256_CTX ctx;
            SHA256_Init(&ctx);
            SHA256_Update(&ctx, chain, HASH);
            SHA256_Update(&ctx, leaf + i, HASH);
            SHA256_Final(at + i, &ctx);
            chain = at + i;
        }
    }
    PyBuffer_Release(&previous);
    PyBuffer_Release(&leaves);
    return out;
}

PyDoc_STRVAR(tree_levels_doc,
"tree_levels(hashes, /)\n--\n\n"
"The interior nodes over a power-of-two count of concatenated hashes, level by level\n"
"up to the root: their pairs' SHA-256(0x01 || left || right), then those nodes'\n"
"pairs' ..., concatenated (empty for one hash).");

static PyObject *tree_levels(PyObject *self, PyObject *arg) {
    Py_buffer hashes;
    if (PyObject_GetBuffer(arg, &hashes, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t count = hashes.len / HASH;
    PyObject *out = NULL;
    if (hashes.len % HASH || count == 0 || (count & (count - 1))) {
        PyErr_SetString(PyExc_ValueError,
                        "hashes must be a power-of-two count of 32-byte hashes");
    } else if ((out = PyBytes_FromStringAndSize(NULL, (count - 1) * HASH)) != NULL) {
        unsigned char *at = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *below = hashes.buf;
        for (Py_ssize_t width = count / 2; width >= 1; width /= 2) {
            for (Py_ssize_t i = 0; i < width; i++) node(below + 2 * i * HASH, at + i * HASH);
            below = at;
            at += width * HASH;
        }
    }
    PyBuffer_Release(&hashes);
    return out;
}

static PyMethodDef methods[] = {
    {"leaf_hashes", leaf_hashes, METH_O, leaf_hashes_doc},
    {"chain_hashes", chain_hashes, METH_VARARGS, chain_hashes_doc},
    {"tree_levels", tree_levels, METH_O, tree_levels_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rfc6962",
    "RFC 6962 leaf hashes, hash chain and subtree levels over many values at once.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__rfc6962(void) { return PyModule_Create(&module); }
