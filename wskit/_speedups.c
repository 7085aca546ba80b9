/*
 * wskit._speedups: C accelerator for frame masking (RFC 6455 §5.3), and a
 * non-blocking send for the threaded layer.
 *
 * apply_mask(data, mask) -> bytes XORs ``data`` with the repeating 4-byte
 * ``mask``. It has the same signature and behaviour as
 * wskit.mask.py_apply_mask, which is used when this module is not built.
 *
 * read_messages(buf, pos, masked, max_size, text, binary) parses the common
 * case of received frames (complete, unfragmented text and binary frames)
 * and stops at anything else, leaving it to wskit.frames.FrameReader.
 *
 * send_nowait(sock, data) -> int (POSIX only) sends what the socket takes
 * at once, without releasing the GIL (see its docstring).
 *
 * Gather(length) is a writable buffer of length bytes in which a large
 * frame's payload is gathered; take(mask) unmasks it in place and returns
 * it as the message's bytes object, with no copy, once no view of it is
 * left (see the type's docstring).
 *
 * Cursor(buffer) holds a buffer in which a large frame is gathered, the
 * write offset and the bytes still due: put(data) copies a piece that does
 * not complete the frame in one call (Protocol.receive_data's commonest
 * call while a large message arrives).
 *
 * Only the public C API is used. Loads and stores go through memcpy so the
 * code is strict-aliasing safe and alignment-agnostic; gcc and clang turn
 * them into plain (unaligned) word or vector moves at -O2/-O3.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#ifndef _WIN32
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

/* Python 3.13's critical sections guard an object's state on free-threaded
   builds (and cost nothing with the GIL); before 3.13, a plain block. */
#ifndef Py_BEGIN_CRITICAL_SECTION
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* Inputs at least this large are masked with the GIL released. */
#define RELEASE_GIL_THRESHOLD ((Py_ssize_t)64 * 1024)

/*
 * XOR n bytes of src with the repeating 4-byte key, writing to dst.
 *
 * RFC 6455 §5.3: octet i of the output is octet i of the input XOR octet
 * (i MOD 4) of the masking key. Eight bytes are handled per step with a
 * 64-bit word holding the key twice; because 8 is a multiple of 4, the
 * key's phase is the same at the start of every word, so no rotation is
 * needed whatever the alignment of src and dst. src and dst may be the
 * same buffer (in-place masking): each step loads its words before it
 * stores them, so they may not otherwise overlap.
 */
static void
mask_bytes(const unsigned char *src, unsigned char *dst,
           Py_ssize_t n, const unsigned char key[4])
{
    unsigned char key8[8];
    uint64_t key64;
    uint64_t word;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&key64, key8, 8); /* same byte order as the data words below */

    /* Four words per iteration: gives the vectoriser a 32-byte body. */
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= key64;
        b ^= key64;
        c ^= key64;
        d ^= key64;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, src + i, 8);
        word ^= key64;
        memcpy(dst + i, &word, 8);
    }
    /* Tail: fewer than 8 bytes; i is a multiple of 8 here, so i & 3 == 0
       at its start and the key index is simply (i & 3). */
    for (; i < n; i++) {
        dst[i] = (unsigned char)(src[i] ^ key[i & 3]);
    }
}

/* mask_bytes, with the GIL released while a large buffer is masked. The
 * caller keeps src and dst alive and pinned (exported buffers, or a bytes
 * object not yet visible to Python), and key is its own copy. */
static void
mask_bytes_unlocked(const unsigned char *src, unsigned char *dst, Py_ssize_t n,
                    const unsigned char key[4])
{
    if (n >= RELEASE_GIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        mask_bytes(src, dst, n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        mask_bytes(src, dst, n, key);
    }
}

/* Fill *view with a C-contiguous byte view of obj, or set an exception.
 *
 * Objects exporting a contiguous buffer are viewed in place. Other buffer
 * exporters (a strided memoryview, for instance) are copied into a new
 * bytes object first, stored in *holder, so every bytes-like object is
 * accepted, as bytes(obj) would. Returns 0 on success, -1 on error.
 */
static int
get_bytes_view(PyObject *obj, const char *argname, Py_buffer *view,
               PyObject **holder)
{
    *holder = NULL;
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "argument '%s' must be a bytes-like object, "
                     "not '%.100s'",
                     argname, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
        return -1;
    }
    /* Not contiguous: make a contiguous copy. */
    PyErr_Clear();
    *holder = PyBytes_FromObject(obj);
    if (*holder == NULL) {
        return -1;
    }
    if (PyObject_GetBuffer(*holder, view, PyBUF_SIMPLE) != 0) {
        Py_CLEAR(*holder);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask)\n"
"--\n"
"\n"
"XOR data with the repeating 4-byte mask (RFC 6455 section 5.3).\n"
"\n"
"Args:\n"
"    data: the payload, any bytes-like object.\n"
"    mask: the 4-byte masking key.\n"
"\n"
"Returns:\n"
"    The masked (or unmasked: the operation is its own inverse) bytes.\n"
"\n"
"Raises:\n"
"    TypeError: data or mask is not a bytes-like object.\n"
"    ValueError: mask is not exactly 4 bytes long.\n");

static PyObject *
apply_mask(PyObject *Py_UNUSED(module), PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data = NULL;
    PyObject *mask = NULL;
    PyObject *data_holder = NULL;
    PyObject *mask_holder = NULL;
    PyObject *result = NULL;
    Py_buffer data_view;
    Py_buffer mask_view;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t i;

    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes 2 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    if (nargs >= 1) {
        data = args[0];
    }
    if (nargs >= 2) {
        mask = args[1];
    }
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot;
        if (PyUnicode_CompareWithASCIIString(name, "data") == 0) {
            slot = &data;
        }
        else if (PyUnicode_CompareWithASCIIString(name, "mask") == 0) {
            slot = &mask;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "apply_mask() got an unexpected keyword argument '%U'",
                         name);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "apply_mask() got multiple values for argument '%U'",
                         name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    if (data == NULL || mask == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() missing required argument '%s'",
                     data == NULL ? "data" : "mask");
        return NULL;
    }

    if (get_bytes_view(mask, "mask", &mask_view, &mask_holder) < 0) {
        return NULL;
    }
    if (mask_view.len != 4) {
        /* RFC 6455 §5.3: the masking key is a 32-bit value. */
        PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, got %zd",
                     mask_view.len);
        goto release_mask;
    }
    if (get_bytes_view(data, "data", &data_view, &data_holder) < 0) {
        goto release_mask;
    }

    result = PyBytes_FromStringAndSize(NULL, data_view.len);
    if (result != NULL && data_view.len > 0) {
        const unsigned char *src = (const unsigned char *)data_view.buf;
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        const unsigned char *key = (const unsigned char *)mask_view.buf;
        Py_ssize_t n = data_view.len;
        unsigned char key_copy[4];

        /* The key is copied so that no Python-visible memory is read
           after the GIL is released, except the pinned data buffer. */
        memcpy(key_copy, key, 4);
        mask_bytes_unlocked(src, dst, n, key_copy);
    }

    PyBuffer_Release(&data_view);
    Py_XDECREF(data_holder);
release_mask:
    PyBuffer_Release(&mask_view);
    Py_XDECREF(mask_holder);
    return result;
}

PyDoc_STRVAR(mask_frame_doc,
"mask_frame(header, data, mask)\n"
"--\n"
"\n"
"Return header + mask + apply_mask(data, mask) in one allocation.\n"
"\n"
"Builds a whole masked frame (RFC 6455 section 5.3) without the copies\n"
"that concatenating the parts would make.\n");

static PyObject *
mask_frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *holders[3] = {NULL, NULL, NULL};
    Py_buffer views[3];
    const char *names[3] = {"header", "data", "mask"};
    PyObject *result = NULL;
    int got = 0;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "mask_frame() takes 3 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    for (; got < 3; got++) {
        if (get_bytes_view(args[got], names[got], &views[got], &holders[got]) < 0) {
            goto done;
        }
    }
    if (views[2].len != 4) {
        PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, got %zd", views[2].len);
        goto done;
    }
    {
        Py_ssize_t hlen = views[0].len;
        Py_ssize_t n = views[1].len;
        unsigned char key_copy[4];
        unsigned char *dst;

        if (n > PY_SSIZE_T_MAX - hlen - 4) {
            PyErr_NoMemory();
            goto done;
        }
        result = PyBytes_FromStringAndSize(NULL, hlen + 4 + n);
        if (result == NULL) {
            goto done;
        }
        dst = (unsigned char *)PyBytes_AS_STRING(result);
        memcpy(key_copy, views[2].buf, 4);
        memcpy(dst, views[0].buf, (size_t)hlen);
        memcpy(dst + hlen, key_copy, 4);
        mask_bytes_unlocked((const unsigned char *)views[1].buf, dst + hlen + 4, n, key_copy);
    }
done:
    while (got-- > 0) {
        PyBuffer_Release(&views[got]);
        Py_XDECREF(holders[got]);
    }
    return result;
}

/* Text payloads up to this size are unmasked on the stack before decoding. */
#define STACK_TEXT 512

/*
 * The descriptor of type's "data" slot, when type is a class whose instances
 * keep their payload in a slot of that name (the event classes: frozen,
 * slotted dataclasses with that one field); NULL, with no error set, for any
 * other callable, which read_messages then calls.
 */
static PyObject *
data_slot(PyObject *type)
{
    PyObject *descr;

    if (!PyType_Check(type)) {
        return NULL;
    }
    descr = PyObject_GetAttrString(type, "data");
    if (descr == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) || Py_TYPE(descr)->tp_descr_set == NULL
            || ((PyTypeObject *)type)->tp_alloc == NULL) {
        Py_DECREF(descr);
        return NULL;
    }
    return descr;
}

/* Module state: read_messages' last event classes and their "data" slots. */
typedef struct {
    PyObject *event_type[2]; /* [0] binary, [1] text */
    PyObject *event_slot[2]; /* NULL: that class is called */
} speedups_state;

/*
 * data_slot(type), remembered for the last class seen in each role (k: 1
 * text, 0 binary); the lookup costs about as much as parsing a small frame.
 * Free-threaded builds look it up each time rather than share the cache.
 */
static PyObject *
cached_data_slot(PyObject *module, int k, PyObject *type)
{
#ifdef Py_GIL_DISABLED
    (void)module;
    (void)k;
    return data_slot(type);
#else
    speedups_state *state = (speedups_state *)PyModule_GetState(module);
    PyObject *slot;

    if (state->event_type[k] == type) {
        return Py_XNewRef(state->event_slot[k]);
    }
    slot = data_slot(type);
    Py_XSETREF(state->event_type[k], Py_NewRef(type));
    Py_XSETREF(state->event_slot[k], Py_XNewRef(slot));
    return slot;
#endif
}

/*
 * An instance of type holding data in the slot descr, made the way its
 * __init__ would leave it but without the Python call (a frozen dataclass's
 * __init__ costs more than parsing a small frame).
 */
static PyObject *
fill_slot(PyObject *type, PyObject *descr, PyObject *data)
{
    PyObject *event = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);

    if (event == NULL) {
        return NULL;
    }
    if (Py_TYPE(descr)->tp_descr_set(descr, event, data) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

PyDoc_STRVAR(read_messages_doc,
"read_messages(buf, pos, masked, max_size, text, binary)\n"
"--\n"
"\n"
"Parse the run of simple frames at buf[pos:]: the common case only.\n"
"\n"
"A simple frame is complete, has FIN set and no RSV bit, is a text (0x1)\n"
"or binary (0x2) frame, is masked exactly when ``masked`` is true, is at\n"
"most ``max_size`` bytes long (``max_size`` < 0: no limit) and, for text,\n"
"is valid UTF-8. For each one, ``text(str)`` or ``binary(bytes)`` is\n"
"called with the unmasked payload and the result is appended to a list;\n"
"a class with a ``data`` slot (the event classes) is not called: its\n"
"instance is made with that slot holding the payload, as its\n"
"``__init__`` would leave it.\n"
"Parsing stops, without raising, at the first frame that is not simple:\n"
"any other frame, an incomplete one, a broken one. The caller parses from\n"
"there with the general parser, which reports every violation with its\n"
"close code; this function never decides one.\n"
"\n"
"Returns:\n"
"    (list of results, position after the last simple frame).\n"
"\n"
"Raises:\n"
"    ValueError: pos is outside buf.\n"
"    TypeError: buf is not a bytes-like object.\n");

static PyObject *
read_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *events = NULL;
    PyObject *result = NULL;
    Py_ssize_t pos, end, max_size;
    int masked;
    PyObject *text_type, *binary_type;
    /* Each class's "data" slot ([0] binary, [1] text), looked up at its first message. */
    PyObject *slots[2] = {NULL, NULL};
    int looked[2] = {0, 0};

    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "read_messages() takes 6 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    masked = PyObject_IsTrue(args[2]);
    if (masked < 0) {
        return NULL;
    }
    max_size = PyLong_AsSsize_t(args[3]);
    if (max_size == -1 && PyErr_Occurred()) {
        /* A limit beyond PY_SSIZE_T_MAX is no limit for what a buffer holds. */
        PyObject *zero;
        int positive;
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NULL;
        }
        PyErr_Clear();
        zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return NULL;
        }
        positive = PyObject_RichCompareBool(args[3], zero, Py_GT);
        Py_DECREF(zero);
        if (positive < 0) {
            return NULL;
        }
        if (!positive) {
            PyErr_SetString(PyExc_ValueError, "max_size must be -1 (no limit) or >= 0");
            return NULL;
        }
    }
    if (max_size < -1) {
        PyErr_SetString(PyExc_ValueError, "max_size must be -1 (no limit) or >= 0");
        return NULL;
    }
    text_type = args[4];
    binary_type = args[5];
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    end = view.len;
    if (pos < 0 || pos > end) {
        PyErr_Format(PyExc_ValueError, "pos %zd is outside the buffer (0-%zd)", pos, end);
        goto done;
    }
    events = PyList_New(0);
    if (events == NULL) {
        goto done;
    }
    {
        const unsigned char *buf = (const unsigned char *)view.buf;
        const unsigned char mask_bit = masked ? 0x80 : 0;

        for (;;) {
            Py_ssize_t avail = end - pos;
            Py_ssize_t hlen = 2;
            Py_ssize_t length;
            unsigned char b0, b1, opcode;
            const unsigned char *payload;
            PyObject *data, *event;
            int rc;

            if (avail < 2) {
                break;
            }
            b0 = buf[pos];
            b1 = buf[pos + 1];
            opcode = b0 & 0x0F;
            /* FIN set, RSV clear, text or binary; masked as expected. */
            if ((b0 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2) || (b1 & 0x80) != mask_bit) {
                break;
            }
            length = b1 & 0x7F;
            if (length == 126) {
                if (avail < 4) {
                    break;
                }
                length = ((Py_ssize_t)buf[pos + 2] << 8) | buf[pos + 3];
                hlen = 4;
            }
            else if (length == 127) {
                uint64_t big = 0;
                int k;
                if (avail < 10) {
                    break;
                }
                for (k = 0; k < 8; k++) {
                    big = (big << 8) | buf[pos + 2 + k];
                }
                /* Whatever the buffer holds is shorter than PY_SSIZE_T_MAX:
                   a larger length (or one with its top bit set) is left to
                   the general parser. */
                if (big > (uint64_t)(end - pos)) {
                    break;
                }
                length = (Py_ssize_t)big;
                hlen = 10;
            }
            if (max_size >= 0 && length > max_size) {
                break;
            }
            if (mask_bit) {
                hlen += 4;
            }
            /* length <= end - pos here (or the frame is incomplete): no overflow. */
            if (length > avail - hlen) {
                break; /* incomplete */
            }
            payload = buf + pos + hlen;
            if (opcode == 1) {
                if (mask_bit && length > 0) {
                    unsigned char key[4];
                    memcpy(key, payload - 4, 4);
                    if (length <= STACK_TEXT) {
                        unsigned char tmp[STACK_TEXT];
                        mask_bytes(payload, tmp, length, key);
                        data = PyUnicode_DecodeUTF8((const char *)tmp, length, NULL);
                    }
                    else {
                        unsigned char *tmp = (unsigned char *)PyMem_Malloc((size_t)length);
                        if (tmp == NULL) {
                            PyErr_NoMemory();
                            goto fail;
                        }
                        mask_bytes(payload, tmp, length, key);
                        data = PyUnicode_DecodeUTF8((const char *)tmp, length, NULL);
                        PyMem_Free(tmp);
                    }
                }
                else {
                    data = PyUnicode_DecodeUTF8((const char *)payload, length, NULL);
                }
                if (data == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                        goto fail;
                    }
                    /* Invalid UTF-8: the general parser reports it (1007). */
                    PyErr_Clear();
                    break;
                }
            }
            else {
                data = PyBytes_FromStringAndSize(NULL, length);
                if (data == NULL) {
                    goto fail;
                }
                if (mask_bit) {
                    unsigned char key[4];
                    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(data);
                    memcpy(key, payload - 4, 4);
                    mask_bytes_unlocked(payload, dst, length, key);  /* the buffer stays exported (pinned) */
                }
                else if (length > 0) {
                    memcpy(PyBytes_AS_STRING(data), payload, (size_t)length);
                }
            }
            {
                int k = opcode == 1;
                PyObject *type = k ? text_type : binary_type;
                if (!looked[k]) {
                    looked[k] = 1;
                    slots[k] = cached_data_slot(module, k, type);
                }
                event = slots[k] != NULL ? fill_slot(type, slots[k], data) : PyObject_CallOneArg(type, data);
            }
            Py_DECREF(data);
            if (event == NULL) {
                goto fail;
            }
            rc = PyList_Append(events, event);
            Py_DECREF(event);
            if (rc < 0) {
                goto fail;
            }
            pos += hlen + length;
        }
    }
    {
        PyObject *stop = PyLong_FromSsize_t(pos);
        if (stop == NULL) {
            goto fail;
        }
        result = PyTuple_Pack(2, events, stop);
        Py_DECREF(stop);
    }
fail:
    Py_CLEAR(events);
done:
    Py_XDECREF(slots[0]);
    Py_XDECREF(slots[1]);
    PyBuffer_Release(&view);
    return result;
}

#if !defined(_WIN32) && defined(MSG_DONTWAIT)
#define HAVE_SEND_NOWAIT 1

/* Larger writes go through socket.sendall(), which releases the GIL. */
#define SEND_NOWAIT_MAX ((Py_ssize_t)64 * 1024)

PyDoc_STRVAR(send_nowait_doc,
"send_nowait(sock, data)\n"
"--\n"
"\n"
"Send as much of data (at most 64 KiB) as sock takes without blocking.\n"
"\n"
"Returns the number of bytes sent: 0 when the socket's buffer is full or\n"
"the call was interrupted; the caller sends the rest with sock.sendall().\n"
"Raises OSError for any other error, ValueError for more than 64 KiB.\n"
"\n"
"Unlike socket.send(), it keeps the GIL: a small write to a socket with\n"
"room takes a few microseconds, and with many busy threads releasing and\n"
"re-acquiring the GIL around it costs far more than the call itself. The\n"
"descriptor is read from sock.fileno() under the same GIL hold, so a\n"
"concurrent close() cannot make the call write to a reused descriptor.\n");

static PyObject *
send_nowait(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *fileno;
    long fd;
    Py_buffer view;
    ssize_t sent;
    int flags = MSG_DONTWAIT;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "send_nowait() takes 2 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    fileno = PyObject_CallMethod(args[0], "fileno", NULL);
    if (fileno == NULL) {
        return NULL;
    }
    fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT32_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len > SEND_NOWAIT_MAX) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "send_nowait() sends at most 65536 bytes, got %zd", view.len);
        return NULL;
    }
#ifdef MSG_NOSIGNAL
    flags |= MSG_NOSIGNAL; /* a closed peer gives EPIPE, never SIGPIPE */
#endif
    sent = send((int)fd, view.buf, (size_t)view.len, flags);
    PyBuffer_Release(&view);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return PyLong_FromLong(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t((Py_ssize_t)sent);
}
#endif

/*
 * Gather: the payload of a large frame, gathered in the bytes object that
 * becomes the message.
 *
 * The object exports a writable buffer over a bytes object that no Python
 * code can reach yet. Every export is counted; take() hands the bytes
 * object out (unmasked in place) only when none is left, so that nothing
 * can write into a bytes object once it is visible. With an export left (a
 * view that its holder did not release), take() returns a copy instead and
 * keeps the original for that view. Either way no further export is
 * allowed.
 */
typedef struct {
    PyObject_HEAD
    PyObject *data;       /* the bytes being gathered; NULL once handed out */
    Py_ssize_t exports;   /* buffers exported and not released */
    int taken;            /* take() was called */
    int copied;           /* take() returned a copy (a view was left) */
} GatherObject;

PyDoc_STRVAR(gather_doc,
"Gather(length)\n"
"--\n"
"\n"
"A writable buffer of length bytes that becomes a bytes object.\n"
"\n"
"Write the payload of a large frame into it through memoryview(gather),\n"
"release every view, then call take(mask): the payload, unmasked in place,\n"
"is returned as a bytes object without a copy. A view still held at that\n"
"point gets a copy returned instead, so that nothing writes into a bytes\n"
"object after it is handed out. After take() no new view can be made.\n"
"The buffer starts uninitialised: write every byte before take().\n"
"\n"
"Raises:\n"
"    ValueError: length is negative.\n"
"    MemoryError: length bytes cannot be allocated.\n");

static PyObject *
gather_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"length", NULL};
    Py_ssize_t length;
    GatherObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:Gather", kwlist, &length)) {
        return NULL;
    }
    if (length < 0) {
        PyErr_Format(PyExc_ValueError, "Gather length must be >= 0, got %zd", length);
        return NULL;
    }
    self = (GatherObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* Uninitialised: only bytes written through the buffer are ever read,
       and the frame reader hands the bytes out once all were written. */
    self->data = PyBytes_FromStringAndSize(NULL, length);
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->exports = 0;
    self->taken = 0;
    self->copied = 0;
    return (PyObject *)self;
}

static void
gather_dealloc(GatherObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->data);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* The export count and the taken flag change under the object's critical
   section: on a free-threaded build, views made and released by several
   threads are counted right, and take() sees them all. */
static int
gather_getbuffer(GatherObject *self, Py_buffer *view, int flags)
{
    int rc = -1;

    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->taken) {
        view->obj = NULL;
        PyErr_SetString(PyExc_BufferError, "the gathered bytes were taken");
    }
    else if (PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->data),
                               PyBytes_GET_SIZE(self->data), 0, flags) == 0) {
        self->exports++;
        rc = 0;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
}

static void
gather_releasebuffer(GatherObject *self, Py_buffer *Py_UNUSED(view))
{
    Py_BEGIN_CRITICAL_SECTION(self);
    self->exports--;
    Py_END_CRITICAL_SECTION();
}

PyDoc_STRVAR(gather_take_doc,
"take($self, mask=None, /)\n"
"--\n"
"\n"
"Return the gathered bytes, XORed with the 4-byte mask when one is given.\n"
"\n"
"In place and without a copy when no view of the buffer is left; else a\n"
"copy. Only once.\n"
"\n"
"Raises:\n"
"    ValueError: called twice, or mask is not 4 bytes long.\n"
"    TypeError: mask is not a bytes-like object.\n");

static PyObject *
gather_take(GatherObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *mask = NULL;
    PyObject *mask_holder = NULL;
    Py_buffer mask_view;
    unsigned char key[4];
    int masked = 0;
    Py_ssize_t n;
    PyObject *result = NULL;
    int already;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "take() takes at most 1 argument, %zd given", nargs);
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        mask = args[0];
        if (get_bytes_view(mask, "mask", &mask_view, &mask_holder) < 0) {
            return NULL;
        }
        if (mask_view.len != 4) {
            PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, got %zd", mask_view.len);
            PyBuffer_Release(&mask_view);
            Py_XDECREF(mask_holder);
            return NULL;
        }
        memcpy(key, mask_view.buf, 4);
        PyBuffer_Release(&mask_view);
        Py_XDECREF(mask_holder);
        masked = 1;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    already = self->taken;
    if (!already) {
        self->taken = 1;  /* no view can be made from here on */
        if (self->exports == 0) {
            result = self->data;  /* nothing else can reach it */
            self->data = NULL;
        }
        else {
            self->copied = 1;
        }
    }
    Py_END_CRITICAL_SECTION();
    if (already) {
        PyErr_SetString(PyExc_ValueError, "take(): the gathered bytes were taken already");
        return NULL;
    }
    if (result != NULL) {
        /* Unmasked in place and handed out as it is. */
        n = PyBytes_GET_SIZE(result);
        if (masked && n > 0) {
            unsigned char *p = (unsigned char *)PyBytes_AS_STRING(result);
            mask_bytes_unlocked(p, p, n, key);
        }
        return result;
    }
    /* A view is left: copy; the original stays with this object for it. */
    n = PyBytes_GET_SIZE(self->data);
    if (!masked) {
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->data), n);
    }
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result != NULL && n > 0) {
        mask_bytes((const unsigned char *)PyBytes_AS_STRING(self->data),
                   (unsigned char *)PyBytes_AS_STRING(result), n, key);
    }
    return result;
}

static PyObject *
gather_get_exports(GatherObject *self, void *Py_UNUSED(closure))
{
    Py_ssize_t exports;

    Py_BEGIN_CRITICAL_SECTION(self);
    exports = self->exports;
    Py_END_CRITICAL_SECTION();
    return PyLong_FromSsize_t(exports);
}

static PyObject *
gather_get_copied(GatherObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->copied);
}

static PyMethodDef gather_methods[] = {
    {"take", (PyCFunction)(void (*)(void))gather_take, METH_FASTCALL, gather_take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gather_getset[] = {
    {"exports", (getter)gather_get_exports, NULL,
     "How many buffers of this object are exported and not released.", NULL},
    {"copied", (getter)gather_get_copied, NULL,
     "Whether take() returned a copy because a view was left.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot gather_slots[] = {
    {Py_tp_doc, (void *)gather_doc},
    {Py_tp_new, (void *)gather_new},
    {Py_tp_dealloc, (void *)gather_dealloc},
    {Py_tp_methods, gather_methods},
    {Py_tp_getset, gather_getset},
    {Py_bf_getbuffer, (void *)gather_getbuffer},
    {Py_bf_releasebuffer, (void *)gather_releasebuffer},
    {0, NULL},
};

static PyType_Spec gather_spec = {
    "wskit._speedups.Gather",
    sizeof(GatherObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    gather_slots,
};

/*
 * Cursor: where the next piece of a gathered frame goes.
 *
 * The cursor holds a writable buffer of the target (an export: a Gather
 * counts it, a bytearray cannot be resized while it is held) until
 * release(), the write offset and the bytes still due. put() copies a
 * piece that leaves some of them due; the piece that completes the frame
 * is refused, for the frame reader's general path. State changes under the
 * object's critical section, as Gather's do.
 */
typedef struct {
    PyObject_HEAD
    Py_buffer view;    /* the target's bytes; view.obj is NULL once released */
    Py_ssize_t at;     /* the write offset: bytes written so far */
    Py_ssize_t due;    /* bytes still due: view.len - at (0 once released) */
} CursorObject;

PyDoc_STRVAR(cursor_doc,
"Cursor(buffer)\n"
"--\n"
"\n"
"Where the next piece of a large frame goes in the buffer it is gathered in.\n"
"\n"
"Holds a writable buffer of buffer (any writable, C-contiguous bytes-like\n"
"object; its bytes are counted) from offset 0 until release(). put(data)\n"
"copies a piece that leaves bytes due; advance(n) accounts for n bytes\n"
"written there some other way.\n"
"\n"
"Raises:\n"
"    BufferError: buffer is not writable or not C-contiguous.\n"
"    TypeError: buffer is not bytes-like.\n");

static PyObject *
cursor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"buffer", NULL};
    PyObject *buffer;
    CursorObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Cursor", kwlist, &buffer)) {
        return NULL;
    }
    self = (CursorObject *)type->tp_alloc(type, 0);  /* zeroed: view.obj is NULL */
    if (self == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->at = 0;
    self->due = self->view.len;
    return (PyObject *)self;
}

static void
cursor_dealloc(CursorObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (self->view.obj != NULL) {
        PyBuffer_Release(&self->view);
    }
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyDoc_STRVAR(cursor_put_doc,
"put($self, data, /)\n"
"--\n"
"\n"
"Copy data in at the offset and advance, if it leaves bytes due.\n"
"\n"
"data is taken when it is bytes, a bytearray or a memoryview of plain\n"
"contiguous bytes (format 'B', one dimension) and strictly shorter than\n"
"what is still due.\n"
"\n"
"Returns:\n"
"    True when data was copied; False, with nothing changed, for any other\n"
"    object, for the piece that completes the frame (or a longer one), and\n"
"    once released.\n");

static PyObject *
cursor_put(CursorObject *self, PyObject *data)
{
    Py_buffer src;
    const char *bytes;
    Py_ssize_t n;
    int held = 0;
    int taken = 0;

    if (PyBytes_CheckExact(data)) {
        bytes = PyBytes_AS_STRING(data);
        n = PyBytes_GET_SIZE(data);
    }
    else if (PyByteArray_CheckExact(data) || PyMemoryView_Check(data)) {
        /* Held while copied: a bytearray cannot be resized meanwhile. */
        if (PyObject_GetBuffer(data, &src, PyBUF_FULL_RO) < 0) {
            return NULL;  /* a released memoryview */
        }
        held = 1;
        if (src.ndim != 1 || (src.format != NULL && strcmp(src.format, "B") != 0)
                || !PyBuffer_IsContiguous(&src, 'C')) {
            PyBuffer_Release(&src);
            Py_RETURN_FALSE;
        }
        bytes = (const char *)src.buf;
        n = src.len;
    }
    else {
        Py_RETURN_FALSE;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    if (n < self->due) {
        /* memmove: data may be a view of the target itself. */
        memmove((char *)self->view.buf + self->at, bytes, (size_t)n);
        self->at += n;
        self->due -= n;
        taken = 1;
    }
    Py_END_CRITICAL_SECTION();
    if (held) {
        PyBuffer_Release(&src);
    }
    return PyBool_FromLong(taken);
}

PyDoc_STRVAR(cursor_advance_doc,
"advance($self, n, /)\n"
"--\n"
"\n"
"Account for n bytes written at the offset some other way; return what is due.\n"
"\n"
"Raises:\n"
"    ValueError: n is negative or more than what is due.\n"
"    TypeError: n is not an integer.\n");

static PyObject *
cursor_advance(CursorObject *self, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, NULL);  /* clamped: too large is more than due */
    Py_ssize_t due;
    int ok = 0;

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    due = self->due;
    if (n >= 0 && n <= due) {
        self->at += n;
        self->due = due = due - n;
        ok = 1;
    }
    Py_END_CRITICAL_SECTION();
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "advance(%zd): %zd bytes are due", n, due);
        return NULL;
    }
    return PyLong_FromSsize_t(due);
}

PyDoc_STRVAR(cursor_release_doc,
"release($self, /)\n"
"--\n"
"\n"
"Release the buffer: nothing is due from here on (put() returns False).\n"
"\n"
"A Gather hands its bytes out without a copy only once every buffer of it\n"
"is released. Calling it again does nothing.\n");

static PyObject *
cursor_release(CursorObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->view.obj != NULL) {
        PyBuffer_Release(&self->view);
    }
    self->due = 0;
    Py_END_CRITICAL_SECTION();
    Py_RETURN_NONE;
}

static PyObject *
cursor_get_offset(CursorObject *self, void *Py_UNUSED(closure))
{
    Py_ssize_t at;

    Py_BEGIN_CRITICAL_SECTION(self);
    at = self->at;
    Py_END_CRITICAL_SECTION();
    return PyLong_FromSsize_t(at);
}

static PyObject *
cursor_get_remaining(CursorObject *self, void *Py_UNUSED(closure))
{
    Py_ssize_t due;

    Py_BEGIN_CRITICAL_SECTION(self);
    due = self->due;
    Py_END_CRITICAL_SECTION();
    return PyLong_FromSsize_t(due);
}

static PyMethodDef cursor_methods[] = {
    {"put", (PyCFunction)(void (*)(void))cursor_put, METH_O, cursor_put_doc},
    {"advance", (PyCFunction)(void (*)(void))cursor_advance, METH_O, cursor_advance_doc},
    {"release", (PyCFunction)(void (*)(void))cursor_release, METH_NOARGS, cursor_release_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cursor_getset[] = {
    {"offset", (getter)cursor_get_offset, NULL,
     "Where the next byte goes: how many were written so far.", NULL},
    {"remaining", (getter)cursor_get_remaining, NULL,
     "How many bytes are still due (0 once released).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot cursor_slots[] = {
    {Py_tp_doc, (void *)cursor_doc},
    {Py_tp_new, (void *)cursor_new},
    {Py_tp_dealloc, (void *)cursor_dealloc},
    {Py_tp_methods, cursor_methods},
    {Py_tp_getset, cursor_getset},
    {0, NULL},
};

static PyType_Spec cursor_spec = {
    "wskit._speedups.Cursor",
    sizeof(CursorObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    cursor_slots,
};

static int
speedups_exec(PyObject *module)
{
    PyType_Spec *specs[2] = {&gather_spec, &cursor_spec};
    const char *names[2] = {"Gather", "Cursor"};
    int k;

    for (k = 0; k < 2; k++) {
        PyObject *type = PyType_FromModuleAndSpec(module, specs[k], NULL);
        if (type == NULL) {
            return -1;
        }
        if (PyModule_AddObject(module, names[k], type) < 0) {
            Py_DECREF(type);
            return -1;
        }
    }
    return 0;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask,
     METH_FASTCALL | METH_KEYWORDS, apply_mask_doc},
    {"mask_frame", (PyCFunction)(void (*)(void))mask_frame, METH_FASTCALL, mask_frame_doc},
    {"read_messages", (PyCFunction)(void (*)(void))read_messages, METH_FASTCALL, read_messages_doc},
#ifdef HAVE_SEND_NOWAIT
    {"send_nowait", (PyCFunction)(void (*)(void))send_nowait, METH_FASTCALL, send_nowait_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *state = (speedups_state *)PyModule_GetState(module);
    int k;

    for (k = 0; k < 2; k++) {
        Py_VISIT(state->event_type[k]);
        Py_VISIT(state->event_slot[k]);
    }
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *state = (speedups_state *)PyModule_GetState(module);
    int k;

    for (k = 0; k < 2; k++) {
        Py_CLEAR(state->event_type[k]);
        Py_CLEAR(state->event_slot[k]);
    }
    return 0;
}

static void
speedups_free(void *module)
{
    (void)speedups_clear((PyObject *)module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Safe without the GIL (free-threaded builds): the module's one state,
       read_messages' cache, is not used there. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(speedups_doc,
"C accelerator for wskit: frame masking (RFC 6455 section 5.3) and a\n"
"non-blocking send that keeps the GIL (POSIX).\n"
"\n"
"Use wskit.mask.apply_mask, which falls back to pure Python when this\n"
"module is not built.\n");

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wskit._speedups", /* m_name */
    speedups_doc,      /* m_doc */
    sizeof(speedups_state), /* m_size */
    speedups_methods,  /* m_methods */
    speedups_slots,    /* m_slots */
    speedups_traverse, /* m_traverse */
    speedups_clear,    /* m_clear */
    speedups_free,     /* m_free */
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
