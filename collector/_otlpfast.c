/* Serialized ExportTraceServiceRequest -> Arrow column buffers of the ``spans`` table.
 *
 * The C twin of collector/flatten_spans.py (the reference and fallback). Two phases:
 *
 *   1. validate(): a schema-driven walk of the whole request that accepts exactly what upb
 *      accepts (wire format, proto3 UTF-8 strings, nesting depth 100, unknown fields of every
 *      wire type incl. groups). Any problem -> ValueError, nothing is produced.
 *   2. extraction: a second walk over the (now known good) bytes that fills growable C buffers
 *      (Arrow offsets / data / validity) with the same texts the Python flattener makes.
 *      Singular message fields that occur more than once are merged like protobuf does (their
 *      occurrences are read as one concatenated message); oneof message cases merge only
 *      while the case does not change.
 *
 * No Python object is created per value; only the returned bytes buffers, the tag keys passed
 * in, the text of a double (PyOS_double_to_string, which is what float.__repr__ uses) and the
 * (at most five) rejection messages.
 *
 * THE RULE: columns by name, never by position. The span_data table's columns, their order and
 * their types are defined once, in collector/store/schema.py (TABLES["span_data"]). This file
 * does not know that order: flatten_spans() returns a dict of buffers keyed by NAME, listed
 * once in OUTPUTS below (and exported as the module's COLUMNS, name -> "fixed" | "string" |
 * "map"), and collector/fast_spans.py assembles the Arrow table by name, in the schema's
 * order, checking at import that the names here and the schema's agree. The names (OUTPUTS
 * is the list):
 *
 *   <column>          a span_data column, one value per kept span, named as in the schema:
 *                     project room session_id trace_id span_id parent_span_id trace_state name
 *                     kind start_time duration_ns status_code status_message flags
 *                     dropped_attributes_count dropped_events_count dropped_links_count
 *   ctx.<column>      a span_data column with one value per resource x scope ("context"):
 *                     service_name scope_name scope_version scope_attributes; "ctx" holds each
 *                     span's context index (int32), by which Python spreads them to the spans
 *   events.<field>    a field of the events struct, one value per event: time name attributes
 *                     dropped_attributes_count; "events.offsets": int32 list offsets (spans + 1)
 *   links.<field>     the same for links: trace_id span_id trace_state attributes
 *                     dropped_attributes_count flags; "links.offsets"
 *   attributes        the span's attributes (map), which Python splits into attribute_keyset
 *                     and attribute_values
 *   ctx.resource_attributes  the context's resource attributes (map) -> resource_id
 *
 * Python alone fills received_at, and makes events, links, attribute_keyset,
 * attribute_values and resource_id of the buffers above. The structures: "fixed" is the
 * little-endian values (bytes; their width is the schema column's type), "string" is (offsets
 * int32 bytes, data bytes, validity bitmap bytes or None, length, null_count), "map" is
 * (offsets int32 bytes, keys string, values string).
 *
 * A column added to the schema that this decoder should fill: fill a buffer, add its row to
 * OUTPUTS, and give flatten_spans.py the same column (tests/test_fast_spans.py compares them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define MAX_NEST 100 /* upb's default recursion limit (messages and groups below the root) */
#define MAX_TS ((uint64_t)INT64_MAX)

static _Thread_local int too_large; /* an Arrow offset would pass 2^31 - 1 */

static const char ERR_WIRE[] =
    "Error parsing message with type "
    "'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest': Wire format was corrupt";
static const char ERR_DEPTH[] =
    "Error parsing message with type "
    "'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest': Exceeded "
    "upb_DecodeOptions_MaxDepth";
static const char ERR_UTF8[] =
    "Error parsing message with type "
    "'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest': String field had bad "
    "UTF-8";

/* ------------------------------------------------------------------------------------------ */
/* wire reading                                                                                */

typedef const uint8_t *P;

static inline int rd_varint(P *pp, P end, uint64_t *out) {
    P p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* tags and lengths: at most 5 bytes and a value that fits 32 bits */
static inline int rd_varint32(P *pp, P end, uint32_t *out) {
    P p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (v > 0xffffffffu) return -1;
            *pp = p;
            *out = (uint32_t)v;
            return 0;
        }
    }
    return -1;
}

static inline uint64_t le64(P p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only (checked at module init) */
}
static inline uint32_t le32(P p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;  /* varint / fixed value */
    P data;      /* LEN payload */
    size_t len;
} Field;

static int skip_group(P *pp, P end, uint32_t num, int depth) __attribute__((noinline));

/* One field from *pp; 1 = got one, 0 = end of buffer, -1 = corrupt. Groups are skipped
 * (validated) and reported with wt 3; an END_GROUP tag is corrupt here. */
static inline __attribute__((always_inline)) int next_field(P *pp, P end, Field *f,
                                                            int depth) {
    if (*pp >= end) return 0;
    uint32_t tag;
    if (**pp < 0x80)
        tag = *(*pp)++;
    else if (rd_varint32(pp, end, &tag))
        return -1;
    f->num = tag >> 3;
    f->wt = tag & 7;
    if (f->num == 0) return -1;
    switch (f->wt) {
    case 0:
        if (*pp < end && **pp < 0x80) {
            f->v = *(*pp)++;
            return 1;
        }
        return rd_varint(pp, end, &f->v) ? -1 : 1;
    case 1:
        if (end - *pp < 8) return -1;
        f->v = le64(*pp);
        *pp += 8;
        return 1;
    case 2: {
        uint32_t n;
        if (*pp < end && **pp < 0x80)
            n = *(*pp)++;
        else if (rd_varint32(pp, end, &n))
            return -1;
        if ((size_t)(end - *pp) < n) return -1;
        f->data = *pp;
        f->len = n;
        *pp += n;
        return 1;
    }
    case 5:
        if (end - *pp < 4) return -1;
        f->v = le32(*pp);
        *pp += 4;
        return 1;
    case 3:
        return skip_group(pp, end, f->num, depth + 1) ? -1 : 1;
    default:
        return -1;
    }
}

static int skip_group(P *pp, P end, uint32_t num, int depth) {
    if (depth > MAX_NEST) return -1; /* upb calls this one corrupt, not too deep */
    for (;;) {
        if (*pp >= end) return -1;
        P save = *pp;
        uint32_t tag;
        if (rd_varint32(pp, end, &tag)) return -1;
        if ((tag & 7) == 4) return (tag >> 3) == num ? 0 : -1;
        *pp = save;
        Field f;
        if (next_field(pp, end, &f, depth) != 1) return -1;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 (strict, as upb's utf8_range and Python's codec)                                     */

static int utf8_ok(P s, size_t n) {
    P e = s + n;
    while (s < e) {
        if (e - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ull)) {
                s += 8;
                continue;
            }
        }
        uint8_t c = *s;
        if (c < 0x80) {
            s++;
        } else if (c >= 0xc2 && c <= 0xdf) {
            if (e - s < 2 || (s[1] & 0xc0) != 0x80) return 0;
            s += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (e - s < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
            if (c == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
            if (c == 0xed && s[1] > 0x9f) return 0;  /* surrogates */
            s += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (e - s < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
                (s[3] & 0xc0) != 0x80)
                return 0;
            if (c == 0xf0 && s[1] < 0x90) return 0;
            if (c == 0xf4 && s[1] > 0x8f) return 0;
            s += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* phase 1: validation against the schema                                                     */

enum { K_NONE = 0, K_VARINT, K_FIXED64, K_FIXED32, K_BYTES, K_STRING, K_MSG };
enum {
    M_REQ, M_RS, M_RES, M_KV, M_ANY, M_ARR, M_KVL, M_ENT, M_SS, M_SCOPE, M_SPAN, M_EVENT,
    M_LINK, M_STATUS, M_COUNT
};
#define MAXF 17
typedef struct {
    uint8_t kind[MAXF];
    uint8_t msg[MAXF];
} MsgDesc;

static MsgDesc DESC[M_COUNT];

static void def(int m, int num, int kind, int sub) {
    DESC[m].kind[num] = (uint8_t)kind;
    DESC[m].msg[num] = (uint8_t)sub;
}

static void init_desc(void) {
    memset(DESC, 0, sizeof DESC);
    def(M_REQ, 1, K_MSG, M_RS);
    def(M_RS, 1, K_MSG, M_RES);
    def(M_RS, 2, K_MSG, M_SS);
    def(M_RS, 3, K_STRING, 0);
    def(M_RES, 1, K_MSG, M_KV);
    def(M_RES, 2, K_VARINT, 0);
    def(M_RES, 3, K_MSG, M_ENT);
    def(M_ENT, 1, K_STRING, 0);
    def(M_ENT, 2, K_STRING, 0);
    def(M_ENT, 3, K_STRING, 0);
    def(M_ENT, 4, K_STRING, 0);
    def(M_KV, 1, K_STRING, 0);
    def(M_KV, 2, K_MSG, M_ANY);
    def(M_KV, 3, K_VARINT, 0);
    def(M_ANY, 1, K_STRING, 0);
    def(M_ANY, 2, K_VARINT, 0);
    def(M_ANY, 3, K_VARINT, 0);
    def(M_ANY, 4, K_FIXED64, 0);
    def(M_ANY, 5, K_MSG, M_ARR);
    def(M_ANY, 6, K_MSG, M_KVL);
    def(M_ANY, 7, K_BYTES, 0);
    def(M_ANY, 8, K_VARINT, 0);
    def(M_ARR, 1, K_MSG, M_ANY);
    def(M_KVL, 1, K_MSG, M_KV);
    def(M_SS, 1, K_MSG, M_SCOPE);
    def(M_SS, 2, K_MSG, M_SPAN);
    def(M_SS, 3, K_STRING, 0);
    def(M_SCOPE, 1, K_STRING, 0);
    def(M_SCOPE, 2, K_STRING, 0);
    def(M_SCOPE, 3, K_MSG, M_KV);
    def(M_SCOPE, 4, K_VARINT, 0);
    def(M_SPAN, 1, K_BYTES, 0);
    def(M_SPAN, 2, K_BYTES, 0);
    def(M_SPAN, 3, K_STRING, 0);
    def(M_SPAN, 4, K_BYTES, 0);
    def(M_SPAN, 5, K_STRING, 0);
    def(M_SPAN, 6, K_VARINT, 0);
    def(M_SPAN, 7, K_FIXED64, 0);
    def(M_SPAN, 8, K_FIXED64, 0);
    def(M_SPAN, 9, K_MSG, M_KV);
    def(M_SPAN, 10, K_VARINT, 0);
    def(M_SPAN, 11, K_MSG, M_EVENT);
    def(M_SPAN, 12, K_VARINT, 0);
    def(M_SPAN, 13, K_MSG, M_LINK);
    def(M_SPAN, 14, K_VARINT, 0);
    def(M_SPAN, 15, K_MSG, M_STATUS);
    def(M_SPAN, 16, K_FIXED32, 0);
    def(M_EVENT, 1, K_FIXED64, 0);
    def(M_EVENT, 2, K_STRING, 0);
    def(M_EVENT, 3, K_MSG, M_KV);
    def(M_EVENT, 4, K_VARINT, 0);
    def(M_LINK, 1, K_BYTES, 0);
    def(M_LINK, 2, K_BYTES, 0);
    def(M_LINK, 3, K_STRING, 0);
    def(M_LINK, 4, K_MSG, M_KV);
    def(M_LINK, 5, K_VARINT, 0);
    def(M_LINK, 6, K_FIXED32, 0);
    def(M_STATUS, 2, K_STRING, 0);
    def(M_STATUS, 3, K_VARINT, 0);
}

static const int KIND_WT[] = {-1, 0, 1, 5, 2, 2, 2};

/* 0 ok, 1 corrupt, 2 bad UTF-8, 3 too deep */
static int validate(P p, P end, int m, int depth) {
    const MsgDesc *d = &DESC[m];
    Field f = {0};
    int r;
    while ((r = next_field(&p, end, &f, depth)) == 1) {
        if (f.num >= MAXF) continue;
        int k = d->kind[f.num];
        if (k == K_NONE || KIND_WT[k] != f.wt) continue; /* unknown, already skipped */
        if (k == K_STRING) {
            if (!utf8_ok(f.data, f.len)) return 2;
        } else if (k == K_MSG) {
            if (depth + 1 > MAX_NEST) return 3;
            int e = validate(f.data, f.data + f.len, d->msg[f.num], depth + 1);
            if (e) return e;
        }
    }
    return r < 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* growable buffers and an arena                                                              */

typedef struct {
    char *d;
    size_t n, cap;
} Vec;

static int vec_grow(Vec *v, size_t extra) {
    size_t need = v->n + extra;
    if (need <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < need) cap *= 2;
    char *d = realloc(v->d, cap);
    if (!d) return -1;
    v->d = d;
    v->cap = cap;
    return 0;
}
static inline int vec_put(Vec *v, const void *s, size_t n) {
    if (v->n + n > v->cap && vec_grow(v, n)) return -1;
    if (n) memcpy(v->d + v->n, s, n);
    v->n += n;
    return 0;
}
static inline int vec_byte(Vec *v, char c) { return vec_put(v, &c, 1); }
static inline int vec_i32(Vec *v, int32_t x) { return vec_put(v, &x, 4); }
static inline int vec_i64(Vec *v, int64_t x) { return vec_put(v, &x, 8); }
static inline int vec_u32(Vec *v, uint32_t x) { return vec_put(v, &x, 4); }
static void vec_free(Vec *v) {
    free(v->d);
    v->d = NULL;
    v->n = v->cap = 0;
}

typedef struct Chunk {
    struct Chunk *prev;
    size_t used, cap;
    char data[];
} Chunk;
typedef struct {
    Chunk *top;
} Arena;
typedef struct {
    Chunk *top;
    size_t used;
} Mark;

static void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->top || a->top->cap - a->top->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        Chunk *c = malloc(sizeof(Chunk) + cap);
        if (!c) return NULL;
        c->prev = a->top;
        c->used = 0;
        c->cap = cap;
        a->top = c;
    }
    void *r = a->top->data + a->top->used;
    a->top->used += n;
    return r;
}
static Mark arena_mark(Arena *a) {
    Mark m = {a->top, a->top ? a->top->used : 0};
    return m;
}
static void arena_release(Arena *a, Mark m) {
    while (a->top != m.top) {
        Chunk *c = a->top;
        a->top = c->prev;
        free(c);
    }
    if (a->top) a->top->used = m.used;
}
static void arena_free(Arena *a) {
    Mark m = {NULL, 0};
    arena_release(a, m);
}

/* ------------------------------------------------------------------------------------------ */
/* Arrow columns                                                                              */

typedef struct {
    Vec off, data, valid;
    int64_t len, nulls;
} StrCol;

static int str_init(StrCol *c) {
    memset(c, 0, sizeof *c);
    return vec_i32(&c->off, 0);
}
static inline int str_bit(StrCol *c, int ok) {
    int64_t i = c->len;
    if ((i & 7) == 0 && vec_byte(&c->valid, 0)) return -1;
    if (ok)
        c->valid.d[i >> 3] |= (char)(1 << (i & 7));
    else
        c->nulls++;
    c->len++;
    return 0;
}
static inline int str_end(StrCol *c) {
    if (c->data.n > INT32_MAX) return too_large = 1, -1;
    return vec_i32(&c->off, (int32_t)c->data.n);
}
static inline int str_add(StrCol *c, const void *s, size_t n) {
    if (vec_put(&c->data, s, n) || str_end(c)) return -1;
    return str_bit(c, 1);
}
static inline int str_null(StrCol *c) {
    if (str_end(c)) return -1;
    return str_bit(c, 0);
}
static void str_free(StrCol *c) {
    vec_free(&c->off);
    vec_free(&c->data);
    vec_free(&c->valid);
}

typedef struct {
    Vec off; /* int32, rows + 1 */
    StrCol keys, vals;
} MapCol;

static int map_init(MapCol *m) {
    memset(m, 0, sizeof *m);
    if (vec_i32(&m->off, 0) || str_init(&m->keys) || str_init(&m->vals)) return -1;
    return 0;
}
static void map_free(MapCol *m) {
    vec_free(&m->off);
    str_free(&m->keys);
    str_free(&m->vals);
}
static int map_end_row(MapCol *m) {
    if (m->keys.len > INT32_MAX) return too_large = 1, -1;
    return vec_i32(&m->off, (int32_t)m->keys.len);
}

/* ------------------------------------------------------------------------------------------ */
/* the decoder state                                                                          */

typedef struct Seg {
    P p;
    size_t n;
    struct Seg *next;
} Seg;

typedef struct {
    const char *s;
    Py_ssize_t n;
} Key;

typedef struct {
    Key *project, *room, *session;
    int np, nr, ns;
    Key dflt;
} Tagging;

/* an attribute: key in the body, value in the body (string), in a scratch Vec, or null */
enum { V_NULL, V_BODY, V_SCRATCH };
typedef struct {
    P k;
    size_t kn;
    int vk;
    P vp;         /* V_BODY */
    size_t voff;  /* V_SCRATCH */
    size_t vn;
    Seg *vsegs;   /* JSON rendering of kvlists: the value's segments */
} Entry;

typedef struct {
    Arena arena;
    Vec scratch;  /* value texts of the current attribute list */
    Vec rscratch; /* value texts of the current resource's attributes */
    Vec json;     /* JSON being rendered */
    const char *err; /* ValueError message */
    Tagging tg;
    uint64_t received;
    /* span columns */
    StrCol project, room, session, trace_id, span_id, parent, trace_state, name, kind;
    StrCol status_code, status_message;
    Vec start, duration, flags, d_attrs, d_events, d_links, ctx_idx;
    MapCol attrs;
    Vec ev_off;
    Vec ev_time, ev_dropped;
    StrCol ev_name;
    MapCol ev_attrs;
    Vec ln_off;
    StrCol ln_trace, ln_span, ln_state;
    MapCol ln_attrs;
    Vec ln_dropped, ln_flags;
    /* context columns (one row per resource x scope) */
    StrCol c_service, c_scope_name, c_scope_version, c_scope_attrs;
    MapCol c_res;
    int64_t nctx, nspans;
    int64_t rejected;
    PyObject *errors; /* list of str, at most 5 */
    PyThreadState *ts; /* set while do_request runs without the GIL */
} St;

/* do_request() runs without the GIL (so the writer thread's DuckDB calls, which take it back
   now and then, do not wait ~1 ms a request behind the decoder); the rare steps that need the
   Python API take it for their duration. */
static void gil_take(St *st) {
    if (st->ts) PyEval_RestoreThread(st->ts);
}

static void gil_drop(St *st) {
    if (st->ts) st->ts = PyEval_SaveThread();
}

#define TRY(x)                 \
    do {                       \
        if ((x) < 0) goto fail; \
    } while (0)

static Seg *seg_add(St *st, Seg **head, Seg **tail, P p, size_t n) {
    Seg *s = arena_alloc(&st->arena, sizeof(Seg));
    if (!s) return NULL;
    s->p = p;
    s->n = n;
    s->next = NULL;
    if (*tail)
        (*tail)->next = s;
    else
        *head = s;
    *tail = s;
    return s;
}

/* iterate over every field of a merged message */
#define FOR_FIELDS(segs, f)                                                   \
    for (Seg *_s = (segs); _s; _s = _s->next)                                 \
        for (P _p = _s->p, _e = _s->p + _s->n; next_field(&_p, _e, &(f), 0) == 1;)

/* ------------------------------------------------------------------------------------------ */
/* texts                                                                                      */

static const char HEX[] = "0123456789abcdef";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int put_hex(Vec *v, P s, size_t n) {
    if (vec_grow(v, 2 * n)) return -1;
    char *o = v->d + v->n;
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = HEX[s[i] >> 4];
        o[2 * i + 1] = HEX[s[i] & 15];
    }
    v->n += 2 * n;
    return 0;
}

static int put_b64(Vec *v, P s, size_t n) {
    if (vec_grow(v, (n + 2) / 3 * 4)) return -1;
    char *o = v->d + v->n;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = B64[x >> 18];
        *o++ = B64[(x >> 12) & 63];
        *o++ = B64[(x >> 6) & 63];
        *o++ = B64[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)s[i] << 16;
        *o++ = B64[x >> 18];
        *o++ = B64[(x >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = B64[x >> 18];
        *o++ = B64[(x >> 12) & 63];
        *o++ = B64[(x >> 6) & 63];
        *o++ = '=';
    }
    v->n = (size_t)(o - v->d);
    return 0;
}

static int put_i64(Vec *v, int64_t x) {
    char buf[24];
    char *e = buf + sizeof buf, *o = e;
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    do {
        *--o = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) *--o = '-';
    return vec_put(v, o, (size_t)(e - o));
}

/* repr(x) for a finite double, as Python writes it, without the Python API (so without the
   GIL: taking it back for every double of a request stalled the decoder behind the writer).
   The digits are the shortest that read back as x: the correctly rounded 15 digits when they
   do (any decimal of at most 15 digits survives a round trip through a double, so the shortest
   is those with trailing zeros dropped), else 16, else 17 (always enough); subnormals, with
   fewer digits of precision, are searched from 1 digit. The layout is
   float_repr's: positional for 1e-4 <= |x| < 1e16 (".0" after integral values), else
   d.ddde+XX. Returns the length written to out (at least 32 bytes). */
/* buf = x to p significant digits ("d.ddde+XX") that read back as x: the correctly rounded
   ones, or else (next to a power of two, where the doubles' spacing changes) the p-digit
   decimal on x's other side. Returns 0 when neither reads back. */
static int digits_for(double x, int p, char *buf, size_t size) {
    snprintf(buf, size, "%.*e", p - 1, x);
    double y = strtod(buf, NULL);
    if (y == x) return 1;
    char alt[48], *e = strchr(buf, 'e');
    size_t m = (size_t)(e - buf);
    memcpy(alt, buf, m);
    int i = (int)m - 1, step = (y < x) == (x > 0) ? 1 : -1; /* on the digits' magnitude */
    for (; i >= 0; i--) { /* add or take one unit in the last digit */
        if (alt[i] < '0' || alt[i] > '9') continue;
        int d = alt[i] - '0' + step;
        if (d >= 0 && d <= 9) {
            alt[i] = (char)('0' + d);
            break;
        }
        alt[i] = step > 0 ? '0' : '9';
    }
    if (i < 0 || (alt[0] == '0' || (alt[0] == '-' && alt[1] == '0'))) return 0; /* carried out */
    snprintf(alt + m, sizeof alt - m, "%s", e);
    if (strtod(alt, NULL) != x) return 0;
    snprintf(buf, size, "%s", alt);
    return 1;
}

static int double_repr(double x, char *out) {
    char buf[48];
    int lo = 15, hi = 17;
    if (x != 0 && fabs(x) < DBL_MIN) lo = 1; /* subnormal: fewer digits, so search them all */
    int held = 0; /* buf holds the digits for lo */
    while (lo < hi) { /* p digits read back as x => so do p + 1 */
        int mid = lo == 15 ? 15 : (lo + hi) / 2;
        held = digits_for(x, mid, buf, sizeof buf);
        if (held)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (!held && (lo == 17 || !digits_for(x, lo, buf, sizeof buf)))
        snprintf(buf, sizeof buf, "%.16e", x); /* 17 digits always read back */
    char digits[20];
    int n = 0, neg = buf[0] == '-';
    const char *c = buf + neg;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') digits[n++] = *c;
    while (n > 1 && digits[n - 1] == '0') n--;
    int decpt = atoi(c + 1) + 1; /* x = 0.DIGITS * 10^decpt */
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            memcpy(o, digits, (size_t)n);
            o += n;
        } else if (decpt < n) {
            memcpy(o, digits, (size_t)decpt);
            o += decpt;
            *o++ = '.';
            memcpy(o, digits + decpt, (size_t)(n - decpt));
            o += n - decpt;
        } else {
            memcpy(o, digits, (size_t)n);
            o += n;
            for (int i = n; i < decpt; i++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        }
    } else {
        *o++ = digits[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(n - 1));
            o += n - 1;
        }
        o += sprintf(o, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    }
    return (int)(o - out);
}

/* float_text(): Python repr for finite values, NaN / Infinity / -Infinity otherwise */
static int put_double(Vec *v, double x, int json) {
    if (isnan(x)) return json ? vec_put(v, "\"NaN\"", 5) : vec_put(v, "NaN", 3);
    if (isinf(x)) {
        if (x > 0) return json ? vec_put(v, "\"Infinity\"", 10) : vec_put(v, "Infinity", 8);
        return json ? vec_put(v, "\"-Infinity\"", 11) : vec_put(v, "-Infinity", 9);
    }
    char s[48];
    return vec_put(v, s, (size_t)double_repr(x, s));
}

/* a JSON string as json.dumps(ensure_ascii=False) writes it */
static int put_json_str(Vec *v, P s, size_t n) {
    if (vec_grow(v, n + 2)) return -1;
    v->d[v->n++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] >= 0x20 && s[j] != '"' && s[j] != '\\') j++;
        if (vec_put(v, s + i, j - i)) return -1;
        if (j == n) break;
        uint8_t c = s[j];
        char esc[8];
        size_t en = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = HEX[c >> 4];
            esc[5] = HEX[c & 15];
            en = 6;
        }
        if (vec_put(v, esc, en)) return -1;
        i = j + 1;
    }
    return vec_byte(v, '"');
}

/* ------------------------------------------------------------------------------------------ */
/* AnyValue                                                                                   */

enum { A_NONE, A_STR, A_BOOL, A_INT, A_DOUBLE, A_ARR, A_KVL, A_BYTES, A_STRINDEX };
typedef struct {
    int c;
    uint64_t v;
    P p;
    size_t n;
    Seg *head, *tail; /* array / kvlist occurrences since the case was last set */
} Any;

static int any_read(St *st, Seg *segs, Any *a) {
    memset(a, 0, sizeof *a);
    Field f = {0};
    FOR_FIELDS(segs, f) {
        switch (f.num) {
        case 1:
            if (f.wt == 2) a->c = A_STR, a->p = f.data, a->n = f.len;
            break;
        case 2:
            if (f.wt == 0) a->c = A_BOOL, a->v = f.v;
            break;
        case 3:
            if (f.wt == 0) a->c = A_INT, a->v = f.v;
            break;
        case 4:
            if (f.wt == 1) a->c = A_DOUBLE, a->v = f.v;
            break;
        case 5:
        case 6:
            if (f.wt == 2) {
                int c = f.num == 5 ? A_ARR : A_KVL;
                if (a->c != c) a->head = a->tail = NULL;
                a->c = c;
                if (!seg_add(st, &a->head, &a->tail, f.data, f.len)) return -1;
            }
            break;
        case 7:
            if (f.wt == 2) a->c = A_BYTES, a->p = f.data, a->n = f.len;
            break;
        case 8:
            if (f.wt == 0) a->c = A_STRINDEX;
            break;
        }
    }
    return 0;
}

/* KeyValue -> key (last wins) and the value's segments */
static int kv_read(St *st, P p, size_t n, Entry *e) {
    Field f = {0};
    Seg *tail = NULL;
    e->k = (P) "";
    e->kn = 0;
    e->vsegs = NULL;
    P q = p, end = p + n;
    while (next_field(&q, end, &f, 0) == 1) {
        if (f.num == 1 && f.wt == 2) {
            e->k = f.data;
            e->kn = f.len;
        } else if (f.num == 2 && f.wt == 2) {
            if (!seg_add(st, &e->vsegs, &tail, f.data, f.len)) return -1;
        }
    }
    return 0;
}

static inline int key_eq(const Entry *a, const Entry *b) {
    return a->kn == b->kn && memcmp(a->k, b->k, a->kn) == 0;
}

static uint64_t hash_key(P s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

/* dict semantics: unique keys in first-seen order, each with its last value.
 * sel[j] = index of the entry whose value wins for the j-th unique key; returns the count. */
static Py_ssize_t dedupe(St *st, Entry *e, Py_ssize_t n, Py_ssize_t *sel) {
    Py_ssize_t m = 0;
    if (n <= 16) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t j = 0;
            for (; j < m; j++)
                if (key_eq(&e[sel[j]], &e[i])) break;
            if (j < m)
                sel[j] = i;
            else
                sel[m++] = i;
        }
        return m;
    }
    size_t cap = 32;
    while (cap < (size_t)n * 2) cap *= 2;
    Py_ssize_t *slot = arena_alloc(&st->arena, cap * sizeof(Py_ssize_t));
    if (!slot) return -1;
    for (size_t i = 0; i < cap; i++) slot[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_key(e[i].k, e[i].kn) & (cap - 1);
        for (;;) {
            Py_ssize_t j = slot[h];
            if (j < 0) {
                slot[h] = m;
                sel[m++] = i;
                break;
            }
            if (key_eq(&e[sel[j]], &e[i])) {
                sel[j] = i;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
    }
    return m;
}

static int render_json(St *st, Vec *out, Seg *segs);

/* the KeyValue entries of a list of occurrences of a repeated KeyValue field */
typedef struct {
    Entry *e;
    Py_ssize_t n, cap;
} Entries;

static int entries_add(St *st, Entries *es, P p, size_t n) {
    if (es->n == es->cap) {
        Py_ssize_t cap = es->cap ? es->cap * 2 : 16;
        Entry *ne = arena_alloc(&st->arena, (size_t)cap * sizeof(Entry));
        if (!ne) return -1;
        if (es->n) memcpy(ne, es->e, (size_t)es->n * sizeof(Entry));
        es->e = ne;
        es->cap = cap;
    }
    Entry *e = &es->e[es->n++];
    memset(e, 0, sizeof *e);
    return kv_read(st, p, n, e);
}

static int render_any_json(St *st, Vec *out, Any *a) {
    Field f = {0};
    switch (a->c) {
    case A_STR:
        return put_json_str(out, a->p, a->n);
    case A_BOOL:
        return a->v ? vec_put(out, "true", 4) : vec_put(out, "false", 5);
    case A_INT:
        return put_i64(out, (int64_t)a->v);
    case A_DOUBLE: {
        double d;
        memcpy(&d, &a->v, 8);
        return put_double(out, d, 1);
    }
    case A_BYTES:
        if (vec_byte(out, '"') || put_b64(out, a->p, a->n)) return -1;
        return vec_byte(out, '"');
    case A_ARR: {
        int first = 1;
        if (vec_byte(out, '[')) return -1;
        FOR_FIELDS(a->head, f) {
            if (f.num != 1 || f.wt != 2) continue;
            if (!first && vec_byte(out, ',')) return -1;
            first = 0;
            Seg s = {f.data, f.len, NULL};
            if (render_json(st, out, &s)) return -1;
        }
        return vec_byte(out, ']');
    }
    case A_KVL: {
        Entries es = {0};
        FOR_FIELDS(a->head, f) {
            if (f.num == 1 && f.wt == 2 && entries_add(st, &es, f.data, f.len)) return -1;
        }
        Py_ssize_t *sel = arena_alloc(&st->arena, (size_t)(es.n + 1) * sizeof(Py_ssize_t));
        if (!sel) return -1;
        Py_ssize_t m = dedupe(st, es.e, es.n, sel);
        if (m < 0) return -1;
        if (vec_byte(out, '{')) return -1;
        for (Py_ssize_t j = 0; j < m; j++) {
            Entry *e = &es.e[sel[j]];
            if (j && vec_byte(out, ',')) return -1;
            if (put_json_str(out, e->k, e->kn) || vec_byte(out, ':')) return -1;
            if (render_json(st, out, e->vsegs)) return -1;
        }
        return vec_byte(out, '}');
    }
    default: /* unset, string_value_strindex */
        return vec_put(out, "null", 4);
    }
}

static int render_json(St *st, Vec *out, Seg *segs) {
    Mark mk = arena_mark(&st->arena);
    Any a;
    if (any_read(st, segs, &a)) return -1;
    int r = render_any_json(st, out, &a);
    arena_release(&st->arena, mk);
    return r;
}

/* value_text(): fills e->vk / vp / voff / vn (scratch texts go to st->scratch) */
static int value_text(St *st, Entry *e, Vec *s) {
    Any a;
    if (any_read(st, e->vsegs, &a)) return -1;
    size_t start = s->n;
    switch (a.c) {
    case A_NONE:
        e->vk = V_NULL;
        return 0;
    case A_STR:
        e->vk = V_BODY;
        e->vp = a.p;
        e->vn = a.n;
        return 0;
    case A_BOOL:
        if (a.v ? vec_put(s, "true", 4) : vec_put(s, "false", 5)) return -1;
        break;
    case A_INT:
        if (put_i64(s, (int64_t)a.v)) return -1;
        break;
    case A_DOUBLE: {
        double d;
        memcpy(&d, &a.v, 8);
        if (put_double(s, d, 0)) return -1;
        break;
    }
    case A_BYTES:
        if (put_b64(s, a.p, a.n)) return -1;
        break;
    case A_STRINDEX:
        if (vec_put(s, "null", 4)) return -1;
        break;
    default:
        if (render_any_json(st, s, &a)) return -1;
    }
    e->vk = V_SCRATCH;
    e->voff = start;
    e->vn = s->n - start;
    return 0;
}

static inline P entry_val(Vec *buf, const Entry *e) {
    return e->vk == V_BODY ? e->vp : (P)buf->d + e->voff;
}

/* A repeated KeyValue (every occurrence of field `num` of a merged message) -> deduplicated
 * entries with their value texts. The texts live in st->scratch until the next call. */
typedef struct {
    Entries es;
    Py_ssize_t *sel;
    Py_ssize_t m;
    Py_ssize_t total; /* occurrences before dedupe */
    Vec *buf;         /* where the non-string value texts are */
} Attrs;

static int attrs_read(St *st, Seg *segs, uint32_t num, Attrs *at, Vec *buf) {
    Field f = {0};
    memset(at, 0, sizeof *at);
    at->buf = buf;
    buf->n = 0;
    FOR_FIELDS(segs, f) {
        if (f.num == num && f.wt == 2 && entries_add(st, &at->es, f.data, f.len)) return -1;
    }
    at->total = at->es.n;
    for (Py_ssize_t i = 0; i < at->es.n; i++) {
        Mark mk = arena_mark(&st->arena);
        if (value_text(st, &at->es.e[i], buf)) return -1;
        arena_release(&st->arena, mk);
        at->es.e[i].vsegs = NULL;
    }
    at->sel = arena_alloc(&st->arena, (size_t)(at->es.n + 1) * sizeof(Py_ssize_t));
    if (!at->sel) return -1;
    at->m = dedupe(st, at->es.e, at->es.n, at->sel);
    return at->m < 0 ? -1 : 0;
}

static int attrs_to_map(St *st, Attrs *at, MapCol *mc) {
    for (Py_ssize_t j = 0; j < at->m; j++) {
        Entry *e = &at->es.e[at->sel[j]];
        if (str_add(&mc->keys, e->k, e->kn)) return -1;
        if (e->vk == V_NULL) {
            if (str_null(&mc->vals)) return -1;
        } else if (str_add(&mc->vals, entry_val(at->buf, e), e->vn)) {
            return -1;
        }
    }
    return map_end_row(mc);
}

/* json_attrs(): a JSON object of texts, or null for no attributes */
static int attrs_to_json(St *st, Attrs *at, StrCol *col) {
    if (!at->total) return str_null(col);
    Vec *o = &st->json;
    o->n = 0;
    if (vec_byte(o, '{')) return -1;
    for (Py_ssize_t j = 0; j < at->m; j++) {
        Entry *e = &at->es.e[at->sel[j]];
        if (j && vec_byte(o, ',')) return -1;
        if (put_json_str(o, e->k, e->kn) || vec_byte(o, ':')) return -1;
        if (e->vk == V_NULL) {
            if (vec_put(o, "null", 4)) return -1;
        } else if (put_json_str(o, entry_val(at->buf, e), e->vn)) {
            return -1;
        }
    }
    if (vec_byte(o, '}')) return -1;
    return str_add(col, o->d, o->n);
}

/* Tagger._first(): the first key with a present, non-empty value */
static const Entry *tag_first(St *st, Attrs *at, Key *keys, int nk) {
    for (int i = 0; i < nk; i++) {
        for (Py_ssize_t j = 0; j < at->m; j++) {
            const Entry *e = &at->es.e[at->sel[j]];
            if (e->kn == (size_t)keys[i].n && memcmp(e->k, keys[i].s, e->kn) == 0) {
                if (e->vk != V_NULL && e->vn) return e;
                break;
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* spans                                                                                      */

typedef struct {
    P p;
    size_t n;
} Bytes;

static const char *KINDS[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER",
                              "CONSUMER"};
static const char *STATUS[] = {"UNSET", "OK", "ERROR"};

static int put_enum(StrCol *c, int32_t v, const char **names, int n) {
    if (v >= 0 && v < n) return str_add(c, names[v], strlen(names[v]));
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%d", (int)v);
    return str_add(c, buf, (size_t)k);
}

/* id_hex()'s complaint about a required/optional id, or NULL when it is fine */
static const char *id_problem(char *buf, size_t bufn, Bytes id, size_t size, const char *what,
                              int required) {
    if (!id.n) {
        if (!required) return NULL;
        snprintf(buf, bufn, "%s is empty", what);
        return buf;
    }
    if (id.n != size) {
        snprintf(buf, bufn, "%s has %zu bytes, expected %zu", what, id.n, size);
        return buf;
    }
    if (required) {
        size_t i = 0;
        while (i < id.n && !id.p[i]) i++;
        if (i == id.n) {
            snprintf(buf, bufn, "%s is all zeros", what);
            return buf;
        }
    }
    return NULL;
}

static int reject_message(St *st, Bytes name, const char *msg) {
    if (PyList_GET_SIZE(st->errors) >= 5) return 0;
    PyObject *n = PyUnicode_DecodeUTF8((const char *)name.p, (Py_ssize_t)name.n, "strict");
    if (!n) return -2;
    PyObject *s = PyUnicode_FromFormat("span %R: %s", n, msg);
    Py_DECREF(n);
    if (!s) return -2;
    int r = PyList_Append(st->errors, s);
    Py_DECREF(s);
    return r ? -2 : 0;
}

static int reject(St *st, Bytes name, const char *msg) {
    st->rejected++;
    gil_take(st);
    int r = reject_message(st, name, msg);
    gil_drop(st);
    return r;
}


/* Returns 0, -1 (memory / too large), -2 (Python error set) */
static int do_span(St *st, P sp, size_t sn, int64_t ci, const Key *rproject, const Key *rroom,
                   const Key *rsession) {
    Field f = {0};
    Bytes tid = {(P) "", 0}, sid = {(P) "", 0}, pid = {(P) "", 0}, state = {(P) "", 0},
          name = {(P) "", 0};
    int32_t kind = 0;
    uint64_t start = 0, end = 0;
    uint32_t flags = 0, dattrs = 0, devents = 0, dlinks = 0;
    Seg *status = NULL, *status_tail = NULL;
    int has_links = 0;
    P p = sp, e = sp + sn;
    Mark mk = arena_mark(&st->arena);

    while (next_field(&p, e, &f, 0) == 1) {
        switch (f.num) {
        case 1: if (f.wt == 2) tid.p = f.data, tid.n = f.len; break;
        case 2: if (f.wt == 2) sid.p = f.data, sid.n = f.len; break;
        case 3: if (f.wt == 2) state.p = f.data, state.n = f.len; break;
        case 4: if (f.wt == 2) pid.p = f.data, pid.n = f.len; break;
        case 5: if (f.wt == 2) name.p = f.data, name.n = f.len; break;
        case 6: if (f.wt == 0) kind = (int32_t)(uint32_t)f.v; break;
        case 7: if (f.wt == 1) start = f.v; break;
        case 8: if (f.wt == 1) end = f.v; break;
        case 10: if (f.wt == 0) dattrs = (uint32_t)f.v; break;
        case 12: if (f.wt == 0) devents = (uint32_t)f.v; break;
        case 13: if (f.wt == 2) has_links = 1; break;
        case 14: if (f.wt == 0) dlinks = (uint32_t)f.v; break;
        case 15:
            if (f.wt == 2 && !seg_add(st, &status, &status_tail, f.data, f.len)) return -1;
            break;
        case 16: if (f.wt == 5) flags = (uint32_t)f.v; break;
        }
    }

    /* the Python flattener's checks, in its order */
    char buf[96];
    const char *bad = NULL;
    if (tid.n != 16 || !memcmp(tid.p, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16))
        bad = id_problem(buf, sizeof buf, tid, 16, "trace_id", 1);
    if (!bad && (sid.n != 8 || !memcmp(sid.p, "\0\0\0\0\0\0\0\0", 8)))
        bad = id_problem(buf, sizeof buf, sid, 8, "span_id", 1);
    if (!bad) bad = id_problem(buf, sizeof buf, pid, 8, "parent_span_id", 0);
    uint64_t st_ns = start ? start : st->received;
    uint64_t et_ns = end ? end : st_ns;
    if (!bad && (st_ns > MAX_TS || et_ns > MAX_TS)) bad = "timestamp is beyond the year 2262";
    if (!bad && has_links) {
        p = sp;
        while (!bad && next_field(&p, e, &f, 0) == 1) {
            if (f.num != 13 || f.wt != 2) continue;
            Bytes lt = {(P) "", 0}, ls = {(P) "", 0};
            Field g = {0};
            P q = f.data, qe = f.data + f.len;
            while (next_field(&q, qe, &g, 0) == 1) {
                if (g.num == 1 && g.wt == 2) lt.p = g.data, lt.n = g.len;
                if (g.num == 2 && g.wt == 2) ls.p = g.data, ls.n = g.len;
            }
            bad = id_problem(buf, sizeof buf, lt, 16, "link trace_id", 1);
            if (!bad) bad = id_problem(buf, sizeof buf, ls, 8, "link span_id", 1);
        }
    }
    if (bad) {
        arena_release(&st->arena, mk);
        return reject(st, name, bad);
    }

    st->nspans++;
    if (vec_i32(&st->ctx_idx, (int32_t)ci)) return -1;
    if (vec_grow(&st->trace_id.data, 32) || put_hex(&st->trace_id.data, tid.p, 16) ||
        str_end(&st->trace_id) || str_bit(&st->trace_id, 1))
        return -1;
    if (put_hex(&st->span_id.data, sid.p, 8) || str_end(&st->span_id) ||
        str_bit(&st->span_id, 1))
        return -1;
    if (pid.n) {
        if (put_hex(&st->parent.data, pid.p, 8) || str_end(&st->parent) ||
            str_bit(&st->parent, 1))
            return -1;
    } else if (str_null(&st->parent)) {
        return -1;
    }
    if (state.n ? str_add(&st->trace_state, state.p, state.n) : str_null(&st->trace_state))
        return -1;
    if (str_add(&st->name, name.p, name.n)) return -1;
    if (put_enum(&st->kind, kind, KINDS, 6)) return -1;
    if (vec_i64(&st->start, (int64_t)st_ns) ||
        vec_i64(&st->duration, (int64_t)et_ns - (int64_t)st_ns))
        return -1;
    {
        Bytes msg = {(P) "", 0};
        int32_t code = 0;
        FOR_FIELDS(status, f) {
            if (f.num == 2 && f.wt == 2) msg.p = f.data, msg.n = f.len;
            if (f.num == 3 && f.wt == 0) code = (int32_t)(uint32_t)f.v;
        }
        if (put_enum(&st->status_code, code, STATUS, 3)) return -1;
        if (msg.n ? str_add(&st->status_message, msg.p, msg.n) : str_null(&st->status_message))
            return -1;
    }
    if (vec_u32(&st->flags, flags) || vec_u32(&st->d_attrs, dattrs) ||
        vec_u32(&st->d_events, devents) || vec_u32(&st->d_links, dlinks))
        return -1;

    /* attributes and the record-level tags */
    Seg whole = {sp, sn, NULL};
    Attrs at;
    if (attrs_read(st, &whole, 9, &at, &st->scratch) || attrs_to_map(st, &at, &st->attrs)) return -1;
    const Entry *tp = tag_first(st, &at, st->tg.project, st->tg.np);
    const Entry *tr = tag_first(st, &at, st->tg.room, st->tg.nr);
    const Entry *ts = tag_first(st, &at, st->tg.session, st->tg.ns);
    if (tp ? str_add(&st->project, entry_val(at.buf, tp), tp->vn)
           : str_add(&st->project, rproject->s, (size_t)rproject->n))
        return -1;
    if (tr ? str_add(&st->room, entry_val(at.buf, tr), tr->vn)
           : (rroom->s ? str_add(&st->room, rroom->s, (size_t)rroom->n) : str_null(&st->room)))
        return -1;
    if (ts ? str_add(&st->session, entry_val(at.buf, ts), ts->vn)
           : (rsession->s ? str_add(&st->session, rsession->s, (size_t)rsession->n)
                          : str_null(&st->session)))
        return -1;
    arena_release(&st->arena, mk);

    /* events and links */
    p = sp;
    while (next_field(&p, e, &f, 0) == 1) {
        if (f.wt != 2 || (f.num != 11 && f.num != 13)) continue;
        Seg one = {f.data, f.len, NULL};
        Field g = {0};
        P q = f.data, qe = f.data + f.len;
        if (f.num == 11) {
            uint64_t t = 0;
            uint32_t dropped = 0;
            Bytes en = {(P) "", 0};
            while (next_field(&q, qe, &g, 0) == 1) {
                if (g.num == 1 && g.wt == 1) t = g.v;
                if (g.num == 2 && g.wt == 2) en.p = g.data, en.n = g.len;
                if (g.num == 4 && g.wt == 0) dropped = (uint32_t)g.v;
            }
            t = t ? t : st_ns;
            if (t > MAX_TS) t = MAX_TS;
            if (vec_i64(&st->ev_time, (int64_t)t) || str_add(&st->ev_name, en.p, en.n) ||
                vec_u32(&st->ev_dropped, dropped))
                return -1;
            if (attrs_read(st, &one, 3, &at, &st->scratch) || attrs_to_map(st, &at, &st->ev_attrs)) return -1;
        } else {
            Bytes lt = {(P) "", 0}, ls = {(P) "", 0}, lst = {(P) "", 0};
            uint32_t dropped = 0, lflags = 0;
            while (next_field(&q, qe, &g, 0) == 1) {
                if (g.num == 1 && g.wt == 2) lt.p = g.data, lt.n = g.len;
                if (g.num == 2 && g.wt == 2) ls.p = g.data, ls.n = g.len;
                if (g.num == 3 && g.wt == 2) lst.p = g.data, lst.n = g.len;
                if (g.num == 5 && g.wt == 0) dropped = (uint32_t)g.v;
                if (g.num == 6 && g.wt == 5) lflags = (uint32_t)g.v;
            }
            if (put_hex(&st->ln_trace.data, lt.p, lt.n) || str_end(&st->ln_trace) ||
                str_bit(&st->ln_trace, 1) || put_hex(&st->ln_span.data, ls.p, ls.n) ||
                str_end(&st->ln_span) || str_bit(&st->ln_span, 1))
                return -1;
            if (lst.n ? str_add(&st->ln_state, lst.p, lst.n) : str_null(&st->ln_state))
                return -1;
            if (vec_u32(&st->ln_dropped, dropped) || vec_u32(&st->ln_flags, lflags)) return -1;
            if (attrs_read(st, &one, 4, &at, &st->scratch) || attrs_to_map(st, &at, &st->ln_attrs)) return -1;
        }
        arena_release(&st->arena, mk);
    }
    if (st->ev_time.n / 8 > INT32_MAX || st->ln_dropped.n / 4 > INT32_MAX)
        return too_large = 1, -1;
    if (vec_i32(&st->ev_off, (int32_t)(st->ev_time.n / 8)) ||
        vec_i32(&st->ln_off, (int32_t)(st->ln_dropped.n / 4)))
        return -1;
    arena_release(&st->arena, mk);
    return 0;
}

static int do_request(St *st, P body, size_t n) {
    Field f = {0}, g = {0};
    P p = body, e = body + n;
    int r;
    while (next_field(&p, e, &f, 0) == 1) {
        if (f.num != 1 || f.wt != 2) continue;
        Mark mk = arena_mark(&st->arena);
        P rs = f.data, rse = f.data + f.len, q;
        /* the resource (merged), its attributes and tags */
        Seg *res = NULL, *res_tail = NULL;
        for (q = rs; next_field(&q, rse, &g, 0) == 1;) {
            if (g.num == 1 && g.wt == 2 && !seg_add(st, &res, &res_tail, g.data, g.len))
                return -1;
        }
        Attrs rat;
        if (attrs_read(st, res, 1, &rat, &st->rscratch)) return -1;
        int ret = -1;
        {
            Key rproject, rroom = {NULL, 0}, rsession = {NULL, 0}, service = {NULL, 0};
            int has_service = 0;
            const Entry *t = tag_first(st, &rat, st->tg.project, st->tg.np);
            if (t)
                rproject.s = (const char *)entry_val(rat.buf, t), rproject.n = (Py_ssize_t)t->vn;
            else
                rproject = st->tg.dflt;
            t = tag_first(st, &rat, st->tg.room, st->tg.nr);
            if (t) rroom.s = (const char *)entry_val(rat.buf, t), rroom.n = (Py_ssize_t)t->vn;
            t = tag_first(st, &rat, st->tg.session, st->tg.ns);
            if (t)
                rsession.s = (const char *)entry_val(rat.buf, t), rsession.n = (Py_ssize_t)t->vn;
            for (Py_ssize_t j = 0; j < rat.m; j++) {
                const Entry *x = &rat.es.e[rat.sel[j]];
                if (x->kn == 12 && !memcmp(x->k, "service.name", 12)) {
                    has_service = x->vk != V_NULL;
                    if (has_service) service.s = (const char *)entry_val(rat.buf, x);
                    service.n = (Py_ssize_t)x->vn;
                    break;
                }
            }

            for (q = rs; next_field(&q, rse, &g, 0) == 1;) {
                if (g.num != 2 || g.wt != 2) continue;
                Mark mk2 = arena_mark(&st->arena);
                int64_t ci = st->nctx++;
                /* context row */
                if (attrs_to_map(st, &rat, &st->c_res)) goto done;
                if (has_service ? str_add(&st->c_service, service.s, (size_t)service.n)
                                : str_null(&st->c_service))
                    goto done;
                Seg *scope = NULL, *scope_tail = NULL;
                P s2, se2 = g.data + g.len;
                Field h = {0};
                for (s2 = g.data; next_field(&s2, se2, &h, 0) == 1;) {
                    if (h.num == 1 && h.wt == 2 && !seg_add(st, &scope, &scope_tail, h.data, h.len))
                        goto done;
                }
                Bytes sname = {(P) "", 0}, sver = {(P) "", 0};
                FOR_FIELDS(scope, h) {
                    if (h.num == 1 && h.wt == 2) sname.p = h.data, sname.n = h.len;
                    if (h.num == 2 && h.wt == 2) sver.p = h.data, sver.n = h.len;
                }
                if (sname.n ? str_add(&st->c_scope_name, sname.p, sname.n)
                            : str_null(&st->c_scope_name))
                    goto done;
                if (sver.n ? str_add(&st->c_scope_version, sver.p, sver.n)
                           : str_null(&st->c_scope_version))
                    goto done;
                {
                    Mark mk3 = arena_mark(&st->arena);
                    Attrs sat;
                    if (attrs_read(st, scope, 3, &sat, &st->scratch) || attrs_to_json(st, &sat, &st->c_scope_attrs))
                        goto done;
                    arena_release(&st->arena, mk3);
                }
                for (s2 = g.data; next_field(&s2, se2, &h, 0) == 1;) {
                    if (h.num != 2 || h.wt != 2) continue;
                    r = do_span(st, h.data, h.len, ci, &rproject, &rroom, &rsession);
                    if (r) {
                        ret = r;
                        goto done;
                    }
                }
                arena_release(&st->arena, mk2);
            }
            ret = 0;
        }
    done:
        arena_release(&st->arena, mk);
        if (ret) return ret;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python glue                                                                                */

static PyObject *vec_bytes(Vec *v) {
    return PyBytes_FromStringAndSize(v->d ? v->d : "", (Py_ssize_t)v->n);
}

/* (offsets, data, validity or None, length, null_count) */
static PyObject *str_obj(StrCol *c) {
    PyObject *o = vec_bytes(&c->off), *d = vec_bytes(&c->data), *v;
    if (c->nulls)
        v = vec_bytes(&c->valid);
    else {
        v = Py_None;
        Py_INCREF(v);
    }
    PyObject *t = NULL;
    if (o && d && v) t = Py_BuildValue("(OOOLL)", o, d, v, (long long)c->len, (long long)c->nulls);
    Py_XDECREF(o);
    Py_XDECREF(d);
    Py_XDECREF(v);
    return t;
}

/* (offsets, keys, values) */
static PyObject *map_obj(MapCol *m) {
    PyObject *o = vec_bytes(&m->off), *k = str_obj(&m->keys), *v = str_obj(&m->vals);
    PyObject *t = NULL;
    if (o && k && v) t = PyTuple_Pack(3, o, k, v);
    Py_XDECREF(o);
    Py_XDECREF(k);
    Py_XDECREF(v);
    return t;
}

/* What flatten_spans() returns, by name (THE RULE at the top of this file): each name, the
 * structure of its value and the St member it is made of. */
enum { O_FIXED, O_STRING, O_MAP };
static const char *const KIND_NAMES[] = {"fixed", "string", "map"};
typedef struct {
    const char *name;
    int kind;
    size_t offset;
} Output;
#define OUT(name, kind, member) {name, kind, offsetof(St, member)}
static const Output OUTPUTS[] = {
    OUT("project", O_STRING, project),
    OUT("room", O_STRING, room),
    OUT("session_id", O_STRING, session),
    OUT("trace_id", O_STRING, trace_id),
    OUT("span_id", O_STRING, span_id),
    OUT("parent_span_id", O_STRING, parent),
    OUT("trace_state", O_STRING, trace_state),
    OUT("name", O_STRING, name),
    OUT("kind", O_STRING, kind),
    OUT("start_time", O_FIXED, start),
    OUT("duration_ns", O_FIXED, duration),
    OUT("status_code", O_STRING, status_code),
    OUT("status_message", O_STRING, status_message),
    OUT("flags", O_FIXED, flags),
    OUT("dropped_attributes_count", O_FIXED, d_attrs),
    OUT("dropped_events_count", O_FIXED, d_events),
    OUT("dropped_links_count", O_FIXED, d_links),
    OUT("attributes", O_MAP, attrs),
    OUT("events.offsets", O_FIXED, ev_off),
    OUT("events.time", O_FIXED, ev_time),
    OUT("events.name", O_STRING, ev_name),
    OUT("events.attributes", O_MAP, ev_attrs),
    OUT("events.dropped_attributes_count", O_FIXED, ev_dropped),
    OUT("links.offsets", O_FIXED, ln_off),
    OUT("links.trace_id", O_STRING, ln_trace),
    OUT("links.span_id", O_STRING, ln_span),
    OUT("links.trace_state", O_STRING, ln_state),
    OUT("links.attributes", O_MAP, ln_attrs),
    OUT("links.dropped_attributes_count", O_FIXED, ln_dropped),
    OUT("links.flags", O_FIXED, ln_flags),
    OUT("ctx", O_FIXED, ctx_idx),
    OUT("ctx.service_name", O_STRING, c_service),
    OUT("ctx.scope_name", O_STRING, c_scope_name),
    OUT("ctx.scope_version", O_STRING, c_scope_version),
    OUT("ctx.scope_attributes", O_STRING, c_scope_attrs),
    OUT("ctx.resource_attributes", O_MAP, c_res),
};
#undef OUT
#define N_OUTPUTS (sizeof OUTPUTS / sizeof *OUTPUTS)

static int keys_from(PyObject *seq, Key **out, int *n) {
    PyObject *fast = PySequence_Fast(seq, "tag keys must be a sequence of str");
    if (!fast) return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    *out = calloc((size_t)k + 1, sizeof(Key));
    if (!*out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyUnicode_Check(s)) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "tag keys must be str");
            return -1;
        }
        /* the UTF-8 buffer is cached in the str, which the caller keeps alive */
        (*out)[i].s = PyUnicode_AsUTF8AndSize(s, &(*out)[i].n);
        if (!(*out)[i].s) {
            Py_DECREF(fast);
            return -1;
        }
    }
    *n = (int)k;
    Py_DECREF(fast);
    return 0;
}

static void st_free(St *st) {
    arena_free(&st->arena);
    vec_free(&st->scratch);
    vec_free(&st->rscratch);
    vec_free(&st->json);
    StrCol *strs[] = {&st->project, &st->room, &st->session, &st->trace_id, &st->span_id,
                      &st->parent, &st->trace_state, &st->name, &st->kind, &st->status_code,
                      &st->status_message, &st->ev_name, &st->ln_trace, &st->ln_span,
                      &st->ln_state, &st->c_service, &st->c_scope_name, &st->c_scope_version,
                      &st->c_scope_attrs};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) str_free(strs[i]);
    Vec *vecs[] = {&st->start, &st->duration, &st->flags, &st->d_attrs,
                   &st->d_events, &st->d_links, &st->ctx_idx, &st->ev_off, &st->ev_time,
                   &st->ev_dropped, &st->ln_off, &st->ln_dropped, &st->ln_flags};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++) vec_free(vecs[i]);
    map_free(&st->attrs);
    map_free(&st->ev_attrs);
    map_free(&st->ln_attrs);
    map_free(&st->c_res);
    free(st->tg.project);
    free(st->tg.room);
    free(st->tg.session);
    Py_XDECREF(st->errors);
}

static int st_init(St *st) {
    StrCol *strs[] = {&st->project, &st->room, &st->session, &st->trace_id, &st->span_id,
                      &st->parent, &st->trace_state, &st->name, &st->kind, &st->status_code,
                      &st->status_message, &st->ev_name, &st->ln_trace, &st->ln_span,
                      &st->ln_state, &st->c_service, &st->c_scope_name, &st->c_scope_version,
                      &st->c_scope_attrs};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (str_init(strs[i])) return -1;
    if (map_init(&st->attrs) || map_init(&st->ev_attrs) || map_init(&st->ln_attrs) ||
        map_init(&st->c_res))
        return -1;
    if (vec_i32(&st->ev_off, 0) || vec_i32(&st->ln_off, 0)) return -1;
    return 0;
}

static PyObject *py_flatten_spans(PyObject *self, PyObject *args) {
    PyObject *body; /* bytes only: immutable, so validation and extraction see the same data */
    PyObject *pk, *rk, *sk, *dflt;
    unsigned long long received;
    if (!PyArg_ParseTuple(args, "SOOOUK", &body, &pk, &rk, &sk, &dflt, &received)) return NULL;
    St *st = calloc(1, sizeof(St));
    PyObject *result = NULL;
    if (!st) return PyErr_NoMemory();
    st->received = received;
    too_large = 0;
    st->errors = PyList_New(0);
    if (!st->errors) goto out;
    if (keys_from(pk, &st->tg.project, &st->tg.np) || keys_from(rk, &st->tg.room, &st->tg.nr) ||
        keys_from(sk, &st->tg.session, &st->tg.ns))
        goto out;
    st->tg.dflt.s = PyUnicode_AsUTF8AndSize(dflt, &st->tg.dflt.n);
    if (!st->tg.dflt.s) goto out;
    if (st_init(st)) {
        PyErr_NoMemory();
        goto out;
    }

    P b = (P)PyBytes_AS_STRING(body);
    size_t n = (size_t)PyBytes_GET_SIZE(body);
    int v;
    Py_BEGIN_ALLOW_THREADS /* pure C over an immutable buffer */
    v = validate(b, b + n, M_REQ, 0);
    Py_END_ALLOW_THREADS
    if (v) {
        PyErr_SetString(PyExc_ValueError, v == 2 ? ERR_UTF8 : v == 3 ? ERR_DEPTH : ERR_WIRE);
        goto out;
    }
    st->ts = PyEval_SaveThread();
    int r = do_request(st, b, n);
    PyEval_RestoreThread(st->ts);
    st->ts = NULL;
    if (r == -2) goto out;
    if (r) {
        if (too_large)
            PyErr_SetString(PyExc_ValueError, "request too large for one Arrow batch");
        else
            PyErr_NoMemory();
        goto out;
    }

    {
        PyObject *cols = PyDict_New();
        if (!cols) goto out;
        for (size_t i = 0; i < N_OUTPUTS; i++) {
            const Output *spec = &OUTPUTS[i];
            void *member = (char *)st + spec->offset;
            PyObject *o = spec->kind == O_FIXED    ? vec_bytes(member)
                          : spec->kind == O_STRING ? str_obj(member)
                                                   : map_obj(member);
            if (!o || PyDict_SetItemString(cols, spec->name, o)) {
                Py_XDECREF(o);
                Py_DECREF(cols);
                goto out;
            }
            Py_DECREF(o);
        }
        result = Py_BuildValue("(NLLO)", cols, (long long)st->nspans, (long long)st->rejected,
                               st->errors);
    }
out:
    st_free(st);
    free(st);
    return result;
}

static PyObject *py_double_repr(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    if (!isfinite(x)) {
        PyErr_SetString(PyExc_ValueError, "double_repr needs a finite float");
        return NULL;
    }
    char s[48];
    return PyUnicode_FromStringAndSize(s, double_repr(x, s));
}

static PyMethodDef methods[] = {
    {"double_repr", py_double_repr, METH_O, "repr(x) of a finite float, as the decoder writes it"},
    {"flatten_spans", py_flatten_spans, METH_VARARGS,
     "flatten_spans(body, project_keys, room_keys, session_keys, default_project, received_ns)"
     " -> ({name: buffers} as COLUMNS lists them, n_spans, rejected, errors)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlpfast",
                                    "OTLP trace requests straight to Arrow buffers.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__otlpfast(void) {
    uint16_t one = 1;
    if (*(uint8_t *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "_otlpfast needs a little-endian machine");
        return NULL;
    }
    init_desc();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    /* COLUMNS: name -> structure of every buffer flatten_spans() returns (see OUTPUTS) */
    PyObject *columns = PyDict_New();
    if (!columns) goto fail;
    for (size_t i = 0; i < N_OUTPUTS; i++) {
        PyObject *kind = PyUnicode_FromString(KIND_NAMES[OUTPUTS[i].kind]);
        int bad = !kind || PyDict_SetItemString(columns, OUTPUTS[i].name, kind);
        Py_XDECREF(kind);
        if (bad) {
            Py_DECREF(columns);
            goto fail;
        }
    }
    if (PyModule_AddObject(m, "COLUMNS", columns)) {
        Py_DECREF(columns);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
