/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON half of the OCI spec parser: paths for error messages, typed
 * getters with limits, and the document checks yajl_tree does not do.
 *
 * yajl_tree has no depth limit (and frees recursively), silently truncates
 * strings at an escaped NUL and accepts comments, so a pre-scan of the raw
 * text rejects deep nesting, comments and too many values before the tree
 * is built, and remembers which string held a \u0000 so that the error
 * can name its path. The tree is yajl_tree's, built by tree_parse() below
 * rather than yajl_tree_parse(), whose growth is quadratic.
 */
#include "oci-spec-json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

/* ---- JSON paths for error messages ---- */

static void path_format(const struct jpath *p, char *buf, size_t size, size_t *pos)
{
        if (!p)
                return;
        path_format(p->up, buf, size, pos);
        int n;
        if (p->key)
                n = snprintf(buf + *pos, size - *pos, "%s%s", p->up ? "." : "", p->key);
        else
                n = snprintf(buf + *pos, size - *pos, "[%zu]", p->index);
        if (n > 0)
                *pos = *pos + (size_t)n >= size ? size - 1 : *pos + (size_t)n;
}

__attribute__((format(printf, 3, 4))) int ocij_error(struct us_error **err, const struct jpath *p,
                                                     const char *fmt, ...)
{
        char path[512] = "";
        size_t pos = 0;
        path_format(p, path, sizeof(path), &pos);

        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                return us_errorf(err, ENOMEM, "format error");
        if (path[0])
                return us_error_msg(err, EINVAL, "%s: %s", path, msg);
        return us_error_msg(err, EINVAL, "%s", msg);
}

int ocij_oom(struct us_error **err)
{
        return us_errorf(err, ENOMEM, "parse");
}

/* ---- typed getters ---- */

static const char *type_name(yajl_val v)
{
        switch (v->type) {
        case yajl_t_string:
                return "string";
        case yajl_t_number:
                return "number";
        case yajl_t_object:
                return "object";
        case yajl_t_array:
                return "array";
        case yajl_t_true:
        case yajl_t_false:
                return "boolean";
        case yajl_t_null:
                return "null";
        case yajl_t_any:
                break;
        }
        return "value";
}

/* With duplicate keys the last one wins, as in Go's encoding/json (which is
 * what wrote the file and what runc reads it with). */
yajl_val ocij_member(yajl_val o, const char *key)
{
        if (!YAJL_IS_OBJECT(o))
                return NULL;
        for (size_t i = o->u.object.len; i-- > 0;)
                if (strcmp(o->u.object.keys[i], key) == 0)
                        return o->u.object.values[i];
        return NULL;
}

bool ocij_present(yajl_val v)
{
        return v && !YAJL_IS_NULL(v);
}

/* 1 when absent and optional, 0 when present, error when absent and required. */
static int check_absent(yajl_val v, const struct jpath *p, unsigned flags, struct us_error **err)
{
        if (ocij_present(v))
                return 0;
        if (flags & F_REQ)
                return ocij_error(err, p, "missing required value");
        return 1;
}

static int type_error(yajl_val v, const struct jpath *p, const char *want, struct us_error **err)
{
        return ocij_error(err, p, "expected %s, got %s", want, type_name(v));
}

/* Borrows the string; *ret untouched when absent. */
int ocij_cstr(yajl_val v, const struct jpath *p, unsigned flags, const char **ret,
              struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (!YAJL_IS_STRING(v))
                return type_error(v, p, "string", err);
        const char *s = v->u.string;
        if ((flags & F_NONEMPTY) && !s[0])
                return ocij_error(err, p, "must not be empty");
        if ((flags & F_ABS) && s[0] != '/')
                return ocij_error(err, p, "must be an absolute path, got \"%.200s\"", s);
        *ret = s;
        return 0;
}

int ocij_string(yajl_val v, const struct jpath *p, unsigned flags, char **ret,
                struct us_error **err)
{
        const char *s = NULL;
        TRY(ocij_cstr(v, p, flags, &s, err));
        if (!s)
                return 0;
        char *copy = strdup(s);
        if (!copy)
                return ocij_oom(err);
        free(*ret);
        *ret = copy;
        return 0;
}

int ocij_bool(yajl_val v, const struct jpath *p, unsigned flags, bool *ret, bool *has,
              struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
                return type_error(v, p, "boolean", err);
        *ret = YAJL_IS_TRUE(v);
        if (has)
                *has = true;
        return 0;
}

/* Integers are read from the number's text, so the whole uint64 range
 * (seccomp argument values) and the whole int64 range work alike. */
static int parse_integer(yajl_val v, const struct jpath *p, bool *neg, uint64_t *mag,
                         struct us_error **err)
{
        if (!YAJL_IS_NUMBER(v))
                return type_error(v, p, "integer", err);
        const char *s = YAJL_GET_NUMBER(v);
        const char *digits = s[0] == '-' ? s + 1 : s;
        if (!digits[0] || strspn(digits, "0123456789") != strlen(digits))
                return ocij_error(err, p, "expected integer, got %.64s", s);
        errno = 0;
        unsigned long long m = strtoull(digits, NULL, 10);
        if (errno == ERANGE)
                return ocij_error(err, p, "number out of range: %.64s", s);
        *neg = s[0] == '-' && m != 0;
        *mag = m;
        return 0;
}

int ocij_u64(yajl_val v, const struct jpath *p, unsigned flags, uint64_t max, uint64_t *ret,
             bool *has, struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        bool neg;
        uint64_t mag;
        TRY(parse_integer(v, p, &neg, &mag, err));
        if (neg)
                return ocij_error(err, p, "must not be negative, got %.64s", YAJL_GET_NUMBER(v));
        if (mag > max)
                return ocij_error(err, p, "out of range (max %ju), got %.64s", (uintmax_t)max,
                                  YAJL_GET_NUMBER(v));
        *ret = mag;
        if (has)
                *has = true;
        return 0;
}

int ocij_i64(yajl_val v, const struct jpath *p, unsigned flags, int64_t min, int64_t max,
             int64_t *ret, bool *has, struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        bool neg;
        uint64_t mag;
        TRY(parse_integer(v, p, &neg, &mag, err));
        int64_t x;
        if (!neg && mag <= (uint64_t)INT64_MAX)
                x = (int64_t)mag;
        else if (neg && mag <= (uint64_t)INT64_MAX)
                x = -(int64_t)mag;
        else if (neg && mag == (uint64_t)INT64_MAX + 1)
                x = INT64_MIN;
        else
                return ocij_error(err, p, "number out of range: %.64s", YAJL_GET_NUMBER(v));
        if (x < min || x > max)
                return ocij_error(err, p, "out of range (%jd..%jd), got %.64s", (intmax_t)min,
                                  (intmax_t)max, YAJL_GET_NUMBER(v));
        *ret = x;
        if (has)
                *has = true;
        return 0;
}

int ocij_u32(yajl_val v, const struct jpath *p, unsigned flags, uint32_t *ret, bool *has,
             struct us_error **err)
{
        uint64_t x;
        bool h = false;
        TRY(ocij_u64(v, p, flags, UINT32_MAX, &x, &h, err));
        if (h) {
                *ret = (uint32_t)x;
                if (has)
                        *has = true;
        }
        return 0;
}

int ocij_int(yajl_val v, const struct jpath *p, unsigned flags, int min, int max, int *ret,
             bool *has, struct us_error **err)
{
        int64_t x;
        bool h = false;
        TRY(ocij_i64(v, p, flags, min, max, &x, &h, err));
        if (h) {
                *ret = (int)x;
                if (has)
                        *has = true;
        }
        return 0;
}

static int check_count(yajl_val v, const struct jpath *p, size_t n, struct us_error **err)
{
        if (n > US_OCI_MAX_ITEMS)
                return ocij_error(err, p, "too many elements in %s (%zu, max %u)", type_name(v), n,
                                  (unsigned)US_OCI_MAX_ITEMS);
        return 0;
}

int ocij_object(yajl_val v, const struct jpath *p, unsigned flags, yajl_val *ret,
                struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (!YAJL_IS_OBJECT(v))
                return type_error(v, p, "object", err);
        TRY(check_count(v, p, v->u.object.len, err));
        *ret = v;
        return 0;
}

int ocij_array(yajl_val v, const struct jpath *p, unsigned flags, yajl_val *ret,
               struct us_error **err)
{
        int r = check_absent(v, p, flags, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (!YAJL_IS_ARRAY(v))
                return type_error(v, p, "array", err);
        TRY(check_count(v, p, v->u.array.len, err));
        if ((flags & F_NONEMPTY) && v->u.array.len == 0)
                return ocij_error(err, p, "must not be empty");
        *ret = v;
        return 0;
}

/* A NULL-terminated list of strings; F_ABS applies to each element. */
int ocij_strv(yajl_val v, const struct jpath *p, unsigned flags, char ***ret, struct us_error **err)
{
        yajl_val a = NULL;
        TRY(ocij_array(v, p, flags, &a, err));
        if (!a)
                return 0;
        size_t n = a->u.array.len;
        _cleanup_strv_ char **strv = calloc(n + 1, sizeof(char *));
        if (!strv)
                return ocij_oom(err);
        for (size_t i = 0; i < n; i++)
                TRY(ocij_string(a->u.array.values[i], JP_IDX(p, i), F_REQ | (flags & F_ABS),
                                &strv[i], err));
        us_strv_free(*ret);
        *ret = TAKE_PTR(strv);
        return 0;
}

/* An object of string values. */
int ocij_kv(yajl_val v, const struct jpath *p, unsigned flags, struct us_oci_kv **ret,
            size_t *ret_n, struct us_error **err)
{
        yajl_val o = NULL;
        TRY(ocij_object(v, p, flags, &o, err));
        if (!o || o->u.object.len == 0)
                return 0;
        size_t n = o->u.object.len;
        struct us_oci_kv *kv = calloc(n, sizeof(*kv));
        if (!kv)
                return ocij_oom(err);
        *ret = kv; /* owned by the caller's structure from here, even on failure */
        *ret_n = n;
        for (size_t i = 0; i < n; i++) {
                kv[i].key = strdup(o->u.object.keys[i]);
                if (!kv[i].key)
                        return ocij_oom(err);
                TRY(ocij_string(o->u.object.values[i], JP_KEY(p, o->u.object.keys[i]), F_REQ,
                                &kv[i].value, err));
        }
        return 0;
}

int ocij_enum(yajl_val v, const struct jpath *p, unsigned flags, const struct name_value *t,
              size_t n, const char *what, int *ret, struct us_error **err)
{
        const char *s = NULL;
        TRY(ocij_cstr(v, p, flags, &s, err));
        if (!s)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (strcmp(t[i].name, s) == 0) {
                        *ret = t[i].value;
                        return 0;
                }
        return ocij_error(err, p, "unknown %s \"%.200s\"", what, s);
}

const char *ocij_enum_name(const struct name_value *t, size_t n, int value)
{
        for (size_t i = 0; i < n; i++)
                if (t[i].value == value)
                        return t[i].name;
        return "?";
}

/* An optional/required sub-object parsed by fn into out. Returns 1 when
 * present, 0 when absent. */
int ocij_struct(yajl_val v, const struct jpath *p, unsigned flags, parse_fn fn, void *out,
                struct us_error **err)
{
        yajl_val o = NULL;
        TRY(ocij_object(v, p, flags, &o, err));
        if (!o)
                return 0;
        TRY(fn(o, p, out, err));
        return 1;
}

/* An array of objects, each parsed by fn into a zeroed element. The array is
 * handed to the caller before the elements are parsed, so a failure leaves
 * it in the caller's structure for its destructor. */
int ocij_objects(yajl_val v, const struct jpath *p, unsigned flags, size_t size, parse_fn fn,
                 void **ret, size_t *ret_n, struct us_error **err)
{
        yajl_val a = NULL;
        TRY(ocij_array(v, p, flags, &a, err));
        if (!a || a->u.array.len == 0)
                return 0;
        size_t n = a->u.array.len;
        char *items = calloc(n, size);
        if (!items)
                return ocij_oom(err);
        *ret = items;
        *ret_n = n;
        for (size_t i = 0; i < n; i++) {
                const struct jpath *ep = JP_IDX(p, i);
                TRY(ocij_struct(a->u.array.values[i], ep, F_REQ, fn, items + i * size, err));
        }
        return 0;
}

/* ---- the document ---- */

/*
 * Checks the raw text for what yajl_tree would not: nesting depth (its tree
 * free recurses), comments (yajl_tree_parse allows them; JSON does not),
 * the number of values (memory), and strings holding \u0000 (yajl_tree
 * truncates them silently). *ret_nul_string is the document-order index of
 * the first string (keys included) with a NUL, or -1.
 */
static int prescan(const char *s, size_t len, long *ret_nul_string, struct us_error **err)
{
        size_t depth = 0, values = 1;
        long strings = -1, nul_string = -1;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (in_string) {
                        if (c == '\\') {
                                if (nul_string < 0 && i + 5 < len && s[i + 1] == 'u' &&
                                    memcmp(s + i + 2, "0000", 4) == 0)
                                        nul_string = strings;
                                i++;
                        } else if (c == '"') {
                                in_string = false;
                        }
                        continue;
                }
                switch (c) {
                case '"':
                        in_string = true;
                        strings++;
                        break;
                case '[':
                case '{':
                        if (++depth > US_OCI_MAX_DEPTH)
                                return us_error_msg(err, EINVAL,
                                                    "nesting deeper than %d levels at byte %zu",
                                                    US_OCI_MAX_DEPTH, i);
                        values++;
                        break;
                case ']':
                case '}':
                        if (depth > 0)
                                depth--;
                        break;
                case ',':
                        if (++values > US_OCI_MAX_VALUES)
                                return us_error_msg(err, EINVAL, "more than %u values",
                                                    (unsigned)US_OCI_MAX_VALUES);
                        break;
                case '/':
                        return us_error_msg(err, EINVAL, "comment at byte %zu: not JSON", i);
                default:
                        break;
                }
        }
        *ret_nul_string = nul_string;
        return 0;
}

/* Finds the path of the k-th string in document order (see prescan). */
static int report_nul_string(yajl_val v, const struct jpath *p, long *k, struct us_error **err)
{
        switch (v->type) {
        case yajl_t_string:
                if ((*k)-- == 0)
                        return ocij_error(err, p, "string contains a NUL character");
                break;
        case yajl_t_object:
                for (size_t i = 0; i < v->u.object.len; i++) {
                        const struct jpath *kp = JP_KEY(p, v->u.object.keys[i]);
                        if ((*k)-- == 0)
                                return ocij_error(err, kp, "key contains a NUL character");
                        TRY(report_nul_string(v->u.object.values[i], kp, k, err));
                }
                break;
        case yajl_t_array:
                for (size_t i = 0; i < v->u.array.len; i++)
                        TRY(report_nul_string(v->u.array.values[i], JP_IDX(p, i), k, err));
                break;
        case yajl_t_number:
        case yajl_t_true:
        case yajl_t_false:
        case yajl_t_null:
        case yajl_t_any:
                break;
        }
        return 0;
}

/* ---- the tree ---- */

/*
 * yajl_tree_parse() grows every array and object by one element per
 * realloc(). Where realloc cannot grow in place (ASan's allocator never
 * does; glibc's cannot while the values sit right behind the array) each
 * element copies the whole array: quadratic. Under ASan a 65537-element
 * array took about a minute, mostly the kernel faulting in the fresh pages
 * of every copy. tree_parse() builds the same tree -- struct yajl_val_s
 * nodes, freed by yajl_tree_free() -- on yajl's event parser with the same
 * options, and grows capacity geometrically.
 */

struct tree_level {
        yajl_val v; /* an array or object, already linked into the tree */
        size_t cap; /* room in its values (and keys) */
        char *key;  /* object: the key whose value comes next */
};

struct tree {
        struct tree_level stack[US_OCI_MAX_DEPTH]; /* the prescan bounds the depth */
        size_t depth;
        yajl_val root;
        int error; /* ENOMEM or E2BIG (too deep), set when a callback gave up */
};

static yajl_val tree_value(yajl_type type)
{
        yajl_val v = calloc(1, sizeof(*v));
        if (v)
                v->type = type;
        return v;
}

/* Room for one more element in level l's values (and keys). */
static bool tree_reserve(struct tree_level *l)
{
        bool obj = YAJL_IS_OBJECT(l->v);
        size_t len = obj ? l->v->u.object.len : l->v->u.array.len;
        if (len < l->cap)
                return true;
        size_t cap = l->cap ? 2 * l->cap : 8;
        if (obj) {
                const char **keys = realloc(l->v->u.object.keys, cap * sizeof(*keys));
                if (!keys)
                        return false;
                l->v->u.object.keys = keys;
                yajl_val *values = realloc(l->v->u.object.values, cap * sizeof(*values));
                if (!values)
                        return false;
                l->v->u.object.values = values;
        } else {
                yajl_val *values = realloc(l->v->u.array.values, cap * sizeof(*values));
                if (!values)
                        return false;
                l->v->u.array.values = values;
        }
        l->cap = cap;
        return true;
}

/* Links v into the tree (it is the tree's from here, even on failure).
 * Returns 1 to go on, 0 to stop the parse (yajl's callback convention). */
static int tree_add(struct tree *t, yajl_val v)
{
        if (!v) {
                t->error = ENOMEM;
                return 0;
        }
        if (t->depth == 0) {
                t->root = v; /* yajl allows one top-level value */
                return 1;
        }
        struct tree_level *l = &t->stack[t->depth - 1];
        if (!tree_reserve(l)) {
                yajl_tree_free(v);
                t->error = ENOMEM;
                return 0;
        }
        if (YAJL_IS_OBJECT(l->v)) {
                l->v->u.object.keys[l->v->u.object.len] = l->key;
                l->v->u.object.values[l->v->u.object.len++] = v;
                l->key = NULL;
        } else {
                l->v->u.array.values[l->v->u.array.len++] = v;
        }
        return 1;
}

static int tree_null(void *ctx)
{
        return tree_add(ctx, tree_value(yajl_t_null));
}

static int tree_boolean(void *ctx, int b)
{
        return tree_add(ctx, tree_value(b ? yajl_t_true : yajl_t_false));
}

/* As yajl_tree: the text (all the getters above read), and its integer and
 * double values, flagged valid when exact. (yajl's own integer reader, not
 * exported, also refuses -9223372036854775808; strtoll takes it.) */
static int tree_number(void *ctx, const char *s, size_t len)
{
        yajl_val v = tree_value(yajl_t_number);
        char *r = v ? strndup(s, len) : NULL;
        if (!r) {
                free(v);
                return tree_add(ctx, NULL);
        }
        v->u.number.r = r;
        char *end = NULL;
        errno = 0;
        v->u.number.i = strtoll(r, &end, 10);
        if (errno == 0 && *end == '\0')
                v->u.number.flags |= YAJL_NUMBER_INT_VALID;
        errno = 0;
        v->u.number.d = strtod(r, &end);
        if (errno == 0 && *end == '\0')
                v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
        return tree_add(ctx, v);
}

/* Copies with a terminating NUL; a \u0000 inside ends the C string early,
 * as in yajl_tree (the prescan reports those). */
static char *tree_strdup(const unsigned char *s, size_t len)
{
        char *c = malloc(len + 1);
        if (c) {
                memcpy(c, s, len);
                c[len] = '\0';
        }
        return c;
}

static int tree_string(void *ctx, const unsigned char *s, size_t len)
{
        yajl_val v = tree_value(yajl_t_string);
        char *c = v ? tree_strdup(s, len) : NULL;
        if (!c) {
                free(v);
                return tree_add(ctx, NULL);
        }
        v->u.string = c;
        return tree_add(ctx, v);
}

static int tree_start(void *ctx, yajl_type type)
{
        struct tree *t = ctx;
        yajl_val v = tree_value(type);
        if (!tree_add(t, v))
                return 0;
        if (t->depth == US_OCI_MAX_DEPTH) {
                t->error = E2BIG;
                return 0;
        }
        t->stack[t->depth++] = (struct tree_level){.v = v};
        return 1;
}

static int tree_start_map(void *ctx)
{
        return tree_start(ctx, yajl_t_object);
}

static int tree_start_array(void *ctx)
{
        return tree_start(ctx, yajl_t_array);
}

static int tree_map_key(void *ctx, const unsigned char *key, size_t len)
{
        struct tree *t = ctx;
        struct tree_level *l = &t->stack[t->depth - 1];
        free(l->key);
        l->key = tree_strdup(key, len);
        if (!l->key) {
                t->error = ENOMEM;
                return 0;
        }
        return 1;
}

static int tree_end(void *ctx)
{
        struct tree *t = ctx;
        struct tree_level *l = &t->stack[--t->depth];
        l->key = (free(l->key), NULL); /* none left in valid JSON */
        return 1;
}

static const yajl_callbacks tree_callbacks = {
        .yajl_null = tree_null,
        .yajl_boolean = tree_boolean,
        .yajl_number = tree_number,
        .yajl_string = tree_string,
        .yajl_start_map = tree_start_map,
        .yajl_map_key = tree_map_key,
        .yajl_end_map = tree_end,
        .yajl_start_array = tree_start_array,
        .yajl_end_array = tree_end,
};

/* Parses json (len bytes, no NUL) into *ret, to be freed with
 * yajl_tree_free(). The errors are yajl_tree_parse()'s words. */
static int tree_parse(const char *json, size_t len, yajl_val *ret, struct us_error **err)
{
        struct tree t = {.depth = 0};
        yajl_handle h = yajl_alloc(&tree_callbacks, NULL, &t);
        if (!h)
                return ocij_oom(err);
        /* As yajl_tree_parse() (the prescan refuses comments). */
        yajl_config(h, yajl_allow_comments, 1);
        (void)yajl_parse(h, (const unsigned char *)json, len);
        yajl_status st = yajl_complete_parse(h);
        int r = 0;
        if (t.error == ENOMEM) {
                r = ocij_oom(err);
        } else if (t.error) {
                r = us_error_msg(err, EINVAL, "nesting deeper than %d levels", US_OCI_MAX_DEPTH);
        } else if (st != yajl_status_ok || !t.root) {
                char errbuf[256] = "";
                unsigned char *msg = yajl_get_error(h, 1, (const unsigned char *)json, len);
                if (msg) {
                        snprintf(errbuf, sizeof(errbuf), "%s", (const char *)msg);
                        yajl_free_error(h, msg);
                }
                errbuf[strcspn(errbuf, "\n")] = '\0';
                r = us_error_msg(err, EINVAL, "%s", errbuf[0] ? errbuf : "parse error");
        }
        yajl_free(h);
        /* The open levels' nodes are in the tree already; only keys are not. */
        for (size_t i = 0; i < t.depth; i++)
                free(t.stack[i].key);
        if (r < 0) {
                yajl_tree_free(t.root);
                return r;
        }
        *ret = t.root;
        return 0;
}

int ocij_parse_document(const char *json, size_t len, parse_fn fn, void *out, struct us_error **err)
{
        if (!json && len > 0)
                return us_error_msg(err, EINVAL, "no input");
        if (len > US_OCI_MAX_CONFIG_SIZE)
                return us_error_msg(err, E2BIG, "too large (%zu bytes, max %u)", len,
                                    (unsigned)US_OCI_MAX_CONFIG_SIZE);
        const char *nul = len ? memchr(json, '\0', len) : NULL;
        if (nul)
                return us_error_msg(err, EINVAL, "NUL byte at offset %zu", (size_t)(nul - json));
        long nul_string;
        TRY(prescan(json, len, &nul_string, err));

        _cleanup_(yajl_tree_free_cleanupp) yajl_val root = NULL;
        TRY(tree_parse(len ? json : "", len, &root, err));
        if (nul_string >= 0) {
                TRY(report_nul_string(root, NULL, &nul_string, err));
                return us_error_msg(err, EINVAL, "string contains a NUL character");
        }
        if (!YAJL_IS_OBJECT(root))
                return type_error(root, NULL, "object", err);
        return fn(root, NULL, out, err);
}

int ocij_only_keys(yajl_val o, const struct jpath *p, const char *const *allowed,
                   struct us_error **err)
{
        for (size_t i = 0; i < o->u.object.len; i++) {
                const char *k = o->u.object.keys[i];
                bool ok = false;
                for (const char *const *a = allowed; *a && !ok; a++)
                        ok = strcmp(*a, k) == 0;
                if (!ok)
                        return ocij_error(err, JP_KEY(p, k), "unknown key");
        }
        return 0;
}
