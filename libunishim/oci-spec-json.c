/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON half of the OCI spec parser: paths for error messages, typed
 * getters with limits, and the document checks yajl_tree does not do.
 *
 * yajl_tree has no depth limit (and frees recursively), silently truncates
 * strings at an escaped NUL and accepts comments, so a pre-scan of the raw
 * text rejects deep nesting, comments and too many values before yajl
 * builds a tree, and remembers which string held a \u0000 so that the error
 * can name its path.
 */
#include "oci-spec-json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

DEFINE_CLEANUP(yajl_val, yajl_tree_free)

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

        _cleanup_free_ char *text = malloc(len + 1);
        if (!text)
                return ocij_oom(err);
        if (len)
                memcpy(text, json, len);
        text[len] = '\0';

        char errbuf[256] = "";
        _cleanup_(yajl_tree_free_cleanupp) yajl_val root =
                yajl_tree_parse(text, errbuf, sizeof(errbuf));
        if (!root) {
                errbuf[strcspn(errbuf, "\n")] = '\0';
                return us_error_msg(err, EINVAL, "%s", errbuf[0] ? errbuf : "parse error");
        }
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
