/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test-server method handlers shared by test-ttrpc.c and test-ttrpc-async.c
 * (header-only: tests/CMakeLists.txt builds each tests/unit/test-*.c alone).
 * Every payload is a ttrpc.KeyValue. The handlers run on the server's loop
 * thread; a struct ttrpc_fx_held is touched by that thread only (or by the
 * test once the loop has stopped).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ttrpc/ttrpc.h"

#define TTRPC_FX_MAX_HELD 512

/* Calls deferred by ttrpc_fx_m_hold until ttrpc_fx_m_release. */
struct ttrpc_fx_held {
        struct us_ttrpc_call *call[TTRPC_FX_MAX_HELD];
        char *key[TTRPC_FX_MAX_HELD]; /* the request's key, strdup'ed */
        size_t n;
};

/* Decodes the payload; on garbage fails the call (INVALID_ARGUMENT) and
 * returns NULL. Free with ttrpc__key_value__free_unpacked. */
static inline Ttrpc__KeyValue *ttrpc_fx_unpack_kv(struct us_ttrpc_call *call, const uint8_t *p,
                                                  size_t len)
{
        return us_ttrpc_call_unpack(call, &ttrpc__key_value__descriptor, NULL, p, len);
}

/* Echo: replies {key: the payload's key, value: the namespace metadata, or
 * no_ns when the request carries none}. */
static inline void ttrpc_fx_echo(struct us_ttrpc_call *call, const uint8_t *p, size_t len,
                                 const char *no_ns)
{
        Ttrpc__KeyValue *in = ttrpc_fx_unpack_kv(call, p, len);
        if (!in)
                return;
        Ttrpc__KeyValue out = TTRPC__KEY_VALUE__INIT;
        out.key = in->key;
        const char *ns = us_ttrpc_call_metadata(call, "containerd-namespace-ttrpc");
        out.value = (char *)(ns ? ns : no_ns);
        us_ttrpc_call_reply(call, &out.base);
        ttrpc__key_value__free_unpacked(in, NULL);
}

/* Method "Fail": key is the gRPC code, value the message. ud unused. */
static inline void ttrpc_fx_m_fail(struct us_ttrpc_call *call, const uint8_t *p, size_t len,
                                   void *ud)
{
        (void)ud;
        Ttrpc__KeyValue *in = ttrpc_fx_unpack_kv(call, p, len);
        if (!in)
                return;
        us_ttrpc_call_fail(call, (enum us_grpc_code)atoi(in->key), "it failed: %s", in->value);
        ttrpc__key_value__free_unpacked(in, NULL);
}

/* Method "Hold"/"Wait": deferred until Release (a long poll); ud is a
 * struct ttrpc_fx_held. RESOURCE_EXHAUSTED past TTRPC_FX_MAX_HELD calls. */
static inline void ttrpc_fx_m_hold(struct us_ttrpc_call *call, const uint8_t *p, size_t len,
                                   void *ud)
{
        struct ttrpc_fx_held *h = ud;
        Ttrpc__KeyValue *in = ttrpc_fx_unpack_kv(call, p, len);
        if (!in)
                return;
        if (h->n == TTRPC_FX_MAX_HELD) {
                us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "too many");
        } else {
                h->key[h->n] = strdup(in->key);
                h->call[h->n++] = call;
        }
        ttrpc__key_value__free_unpacked(in, NULL);
}

/* Replies {key, value: "released"} to every held call. */
static inline void ttrpc_fx_release_all(struct ttrpc_fx_held *h)
{
        /* Newest first: replies go out in the opposite order of the requests. */
        while (h->n > 0) {
                size_t i = --h->n;
                Ttrpc__KeyValue out = TTRPC__KEY_VALUE__INIT;
                out.key = h->key[i];
                out.value = "released";
                us_ttrpc_call_reply(h->call[i], &out.base);
                free(h->key[i]);
        }
}

/* Method "Release": releases every held call, then replies empty; ud is the
 * struct ttrpc_fx_held the Hold method fills. */
static inline void ttrpc_fx_m_release(struct us_ttrpc_call *call, const uint8_t *p, size_t len,
                                      void *ud)
{
        (void)p;
        (void)len;
        ttrpc_fx_release_all(ud);
        us_ttrpc_call_reply(call, NULL);
}
