/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Scope-bound cleanup in the style of systemd and crun. Every library type in
 * use gets a DEFINE_CLEANUP; ownership leaves a scope only through TAKE_PTR()
 * or TAKE_FD().
 */

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _taken = (p);                                                        \
                (p) = NULL;                                                                        \
                _taken;                                                                            \
        })

#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _taken = (fd);                                                                 \
                (fd) = -1;                                                                         \
                _taken;                                                                            \
        })

static inline void us_freep(void *p)
{
        free(*(void **)p);
}

/* Closes without clobbering errno: cleanup runs on error paths. */
static inline int us_close(int fd)
{
        if (fd >= 0) {
                int saved = errno;
                (void)close(fd);
                errno = saved;
        }
        return -1;
}

static inline void us_closep(int *fd)
{
        us_close(*fd);
}

static inline void us_fclosep(FILE **f)
{
        if (*f)
                (void)fclose(*f);
}

static inline void us_strv_free(char **v)
{
        if (!v)
                return;
        for (char **i = v; *i; i++)
                free(*i);
        free(v);
}

static inline void us_strv_freep(char ***v)
{
        us_strv_free(*v);
}

/* Any unpacked protobuf-c message (a pointer to a generated struct, whose
 * first member is its ProtobufCMessage base). */
static inline void us_pb_freep(void *p)
{
        ProtobufCMessage **m = p;
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(us_freep)
#define _cleanup_close_  _cleanup_(us_closep)
#define _cleanup_fclose_ _cleanup_(us_fclosep)
#define _cleanup_strv_   _cleanup_(us_strv_freep)
#define _cleanup_pb_     _cleanup_(us_pb_freep)

/* DEFINE_CLEANUP(yajl_val, yajl_tree_free) defines yajl_tree_free_cleanupp(),
 * which frees a non-NULL value: declare with
 * _cleanup_(yajl_tree_free_cleanupp) yajl_val v = NULL; */
#define DEFINE_CLEANUP(type, func)                                                                 \
        static inline void func##_cleanupp(type *p)                                                \
        {                                                                                          \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }

#define US_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
