/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as a ttrpc byte stream, through the same path the server
 * and the client take: the frame reader (fed in chunks whose size the first
 * input byte picks, to exercise partial reads), then the envelope decoders.
 */
#include <stddef.h>
#include <stdint.h>

#include "ttrpc/ttrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Out-of-range sizes first: the reader never holds more than one
         * maximal frame, so larger inputs only test the fuzzer's memory. */
        if (size < 1 || size > US_TTRPC_HEADER_SIZE + US_TTRPC_MAX_MESSAGE)
                return 0;
        size_t chunk = (size_t)(data[0] % 64) + 1;
        data++;
        size--;

        /* The envelope decoders on the raw bytes. */
        Ttrpc__Request *req = NULL;
        if (us_ttrpc_decode_request(data, size, &req, NULL) == 0)
                ttrpc__request__free_unpacked(req, NULL);
        Ttrpc__Response *resp = NULL;
        if (us_ttrpc_decode_response(data, size, &resp, NULL) == 0)
                ttrpc__response__free_unpacked(resp, NULL);

        /* The byte stream, a chunk at a time, draining frames as they come. */
        struct us_ttrpc_rbuf b = {0};
        for (size_t off = 0; off < size; off += chunk) {
                size_t n = size - off < chunk ? size - off : chunk;
                if (us_ttrpc_rbuf_append(&b, data + off, n) < 0)
                        __builtin_trap(); /* drained after every chunk: never full */
                for (;;) {
                        struct us_ttrpc_header h;
                        const uint8_t *payload = NULL;
                        struct us_error *err = NULL;
                        int r = us_ttrpc_rbuf_next(&b, &h, &payload, &err);
                        err = us_error_free(err);
                        if (r == 0)
                                break;
                        if (r < 0)
                                continue; /* oversized: skipped as it arrives */
                        if (h.length > US_TTRPC_MAX_MESSAGE)
                                __builtin_trap();
                        if (h.type == US_TTRPC_TYPE_REQUEST) {
                                if (us_ttrpc_decode_request(payload, h.length, &req, NULL) == 0) {
                                        (void)req->service[0];
                                        (void)req->method[0];
                                        ttrpc__request__free_unpacked(req, NULL);
                                }
                        } else if (us_ttrpc_decode_response(payload, h.length, &resp, NULL) == 0) {
                                ttrpc__response__free_unpacked(resp, NULL);
                        }
                }
                us_ttrpc_rbuf_trim(&b);
                /* Bounded: one maximal frame plus a read's worth, at most. */
                if (b.cap > US_TTRPC_HEADER_SIZE + US_TTRPC_MAX_MESSAGE + 4096)
                        __builtin_trap();
        }
        us_ttrpc_rbuf_release(&b);
        return 0;
}
