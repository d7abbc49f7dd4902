/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as what a guest agent sends back to the asynchronous ttrpc
 * client, through its real response path (frame reader, dispatch by stream
 * id, envelope decoding, status mapping, breaking the connection on protocol
 * errors). The first input byte picks how many calls are in flight (stream
 * ids 1, 3, 5, ...), the chunk size the bytes arrive in, and whether one call
 * is cancelled midway. Whatever arrives, every call must end exactly once.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ttrpc/ttrpc.h"

#define MAX_CALLS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                     void *userdata)
{
        unsigned *count = userdata;
        if (status == 0 && (err || (len > 0 && !payload)))
                __builtin_trap();
        if (status < 0 && (!err || payload || len))
                __builtin_trap();
        (*count)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Out-of-range sizes first: the reader never holds more than one
         * maximal frame, so larger inputs only test the fuzzer's memory. */
        if (size < 1 || size > US_TTRPC_HEADER_SIZE + US_TTRPC_MAX_MESSAGE)
                return 0;
        unsigned n_calls = (data[0] & 7u) + 1;
        size_t chunk = (data[0] & 0x40) ? 4096 : (size_t)((data[0] >> 3) & 7u) + 1;
        bool cancel_one = data[0] & 0x80;
        data++;
        size--;

        struct us_loop *loop = NULL;
        if (us_loop_new(&loop, NULL) < 0)
                return 0;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                us_loop_free(loop);
                return 0;
        }
        struct us_ttrpc_aclient *c = NULL;
        if (us_ttrpc_aclient_new(loop, sv[0], &c, NULL) < 0)
                __builtin_trap();

        unsigned counts[MAX_CALLS] = {0};
        uint64_t ids[MAX_CALLS] = {0};
        for (unsigned i = 0; i < n_calls; i++) {
                Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
                kv.key = "k";
                kv.value = "v";
                if (us_ttrpc_aclient_call(c, "unishim.agent.v1.Agent", "WaitProcess", &kv.base,
                                          NULL, 0, 0, on_reply, &counts[i], &ids[i], NULL) < 0)
                        __builtin_trap();
        }

        for (size_t off = 0; off < size; off += chunk) {
                size_t n = size - off < chunk ? size - off : chunk;
                int r = us_ttrpc_aclient_feed(c, data + off, n);
                if (r == -ENOTCONN)
                        break;
                if (r < 0)
                        __builtin_trap(); /* only -ENOMEM, which must not happen here */
                if (cancel_one && off >= size / 2 && off < size / 2 + chunk)
                        us_ttrpc_aclient_cancel(c, ids[0]);
        }
        c = us_ttrpc_aclient_free(c);
        for (unsigned i = 0; i < n_calls; i++)
                if (counts[i] != 1)
                        __builtin_trap();
        close(sv[1]);
        us_loop_free(loop);
        return 0;
}
