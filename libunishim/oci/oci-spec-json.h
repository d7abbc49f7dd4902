/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internal to the OCI spec parser (oci-spec*.c): typed getters over a
 * yajl tree that carry the JSON path of the value for error messages.
 *
 * Conventions of every getter ocij_X(v, p, flags, ..., err):
 *   v     the value (NULL or JSON null = absent), p its path;
 *         pass both as FIELD(object, parent_path, "key");
 *   flags F_REQ (absent is an error), F_ABS, F_NONEMPTY;
 *   out   written only when the value is present (has flags set to true);
 *   ret   0, or -errno with *err naming the path.
 * Containers that a getter allocates are stored into the caller's structure
 * before their elements are parsed, so on failure the caller's destructor
 * frees the partial result.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "base/cleanup.h"
#include "base/error.h"
#include "oci-spec.h"

/* _cleanup_(yajl_tree_free_cleanupp) yajl_val v: freed with its tree. */
DEFINE_CLEANUP(yajl_val, yajl_tree_free)

struct jpath {
        const struct jpath *up;
        const char *key; /* NULL: array element at index */
        size_t index;
};

#define JP_KEY(parent, k) (&(const struct jpath){.up = (parent), .key = (k)})
#define JP_IDX(parent, i) (&(const struct jpath){.up = (parent), .index = (i)})

/* The member k of object o and its path: the first two arguments of every getter. */
#define FIELD(o, p, k) ocij_member((o), (k)), JP_KEY((p), (k))
/* A value and its path as one macro argument. */
#define VP(v, p) (v), (p)

#define TRY(expr)                                                                                  \
        do {                                                                                       \
                int _r = (expr);                                                                   \
                if (_r < 0)                                                                        \
                        return _r;                                                                 \
        } while (0)

enum {
        F_REQ = 1 << 0,      /* missing or null is an error */
        F_ABS = 1 << 1,      /* string (or each string of a list) must be an absolute path */
        F_NONEMPTY = 1 << 2, /* string or list must not be empty */
};

struct name_value {
        const char *name;
        int value;
};

/* vp: FIELD(o, p, key) or VP(value, path) */
#define GET_ENUM(vp, flags, table, what, ret, err)                                                 \
        ocij_enum(vp, flags, table, US_ELEMENTSOF(table), what, ret, err)

typedef int (*parse_fn)(yajl_val o, const struct jpath *p, void *out, struct us_error **err);

#define GET_OBJECTS(vp, flags, fn, arr, n, err)                                                    \
        ({                                                                                         \
                void *_items = NULL;                                                               \
                int _go_r = ocij_objects(vp, flags, sizeof(*(arr)), fn, &_items, &(n), err);       \
                if (_items)                                                                        \
                        (arr) = _items;                                                            \
                _go_r;                                                                             \
        })

__attribute__((format(printf, 3, 4))) int ocij_error(struct us_error **err, const struct jpath *p,
                                                     const char *fmt, ...);

int ocij_oom(struct us_error **err);

/* Refuses members of object o not in allowed (NULL-terminated): for files
 * written by people (operator config, pod descriptions), where an unknown
 * key is a typo, not a newer schema. */
int ocij_only_keys(yajl_val o, const struct jpath *p, const char *const *allowed,
                   struct us_error **err);

yajl_val ocij_member(yajl_val o, const char *key);

bool ocij_present(yajl_val v);

int ocij_cstr(yajl_val v, const struct jpath *p, unsigned flags, const char **ret,
              struct us_error **err);

int ocij_string(yajl_val v, const struct jpath *p, unsigned flags, char **ret,
                struct us_error **err);

int ocij_bool(yajl_val v, const struct jpath *p, unsigned flags, bool *ret, bool *has,
              struct us_error **err);

int ocij_u64(yajl_val v, const struct jpath *p, unsigned flags, uint64_t max, uint64_t *ret,
             bool *has, struct us_error **err);

int ocij_i64(yajl_val v, const struct jpath *p, unsigned flags, int64_t min, int64_t max,
             int64_t *ret, bool *has, struct us_error **err);

int ocij_u32(yajl_val v, const struct jpath *p, unsigned flags, uint32_t *ret, bool *has,
             struct us_error **err);

int ocij_int(yajl_val v, const struct jpath *p, unsigned flags, int min, int max, int *ret,
             bool *has, struct us_error **err);

int ocij_object(yajl_val v, const struct jpath *p, unsigned flags, yajl_val *ret,
                struct us_error **err);

int ocij_array(yajl_val v, const struct jpath *p, unsigned flags, yajl_val *ret,
               struct us_error **err);

int ocij_strv(yajl_val v, const struct jpath *p, unsigned flags, char ***ret,
              struct us_error **err);

int ocij_kv(yajl_val v, const struct jpath *p, unsigned flags, struct us_oci_kv **ret,
            size_t *ret_n, struct us_error **err);

int ocij_enum(yajl_val v, const struct jpath *p, unsigned flags, const struct name_value *t,
              size_t n, const char *what, int *ret, struct us_error **err);

const char *ocij_enum_name(const struct name_value *t, size_t n, int value);

int ocij_struct(yajl_val v, const struct jpath *p, unsigned flags, parse_fn fn, void *out,
                struct us_error **err);

int ocij_objects(yajl_val v, const struct jpath *p, unsigned flags, size_t size, parse_fn fn,
                 void **ret, size_t *ret_n, struct us_error **err);

int ocij_parse_document(const char *json, size_t len, parse_fn fn, void *out,
                        struct us_error **err);
