/* SPDX-License-Identifier: Apache-2.0 */
#include "reply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.pb-c.h"

int sandbox_reply_read_stream(const uint8_t *payload, size_t len, size_t max_len,
                              uint8_t **ret_data, size_t *ret_len, bool *ret_eof,
                              struct us_error **err)
{
        Unishim__Agent__V1__ReadStreamResponse *resp =
                unishim__agent__v1__read_stream_response__unpack(NULL, len, payload);
        if (!resp)
                return us_error_msg(err, EBADMSG, "guest agent ReadStream: malformed reply");
        int r = 0;
        uint8_t *data = NULL;
        if (resp->data.len > max_len) {
                r = us_error_msg(err, EBADMSG,
                                 "guest agent ReadStream: %zu bytes, more than the %zu asked for",
                                 resp->data.len, max_len);
        } else if (resp->data.len) {
                data = malloc(resp->data.len);
                if (!data)
                        r = us_errorf(err, ENOMEM, "guest agent ReadStream");
                else
                        memcpy(data, resp->data.data, resp->data.len);
        }
        if (r == 0) {
                *ret_data = data;
                *ret_len = resp->data.len;
                *ret_eof = resp->eof;
        }
        unishim__agent__v1__read_stream_response__free_unpacked(resp, NULL);
        return r;
}

int sandbox_reply_wait(const uint8_t *payload, size_t len, uint32_t *ret_status,
                       struct us_error **err)
{
        Unishim__Agent__V1__WaitProcessResponse *resp =
                unishim__agent__v1__wait_process_response__unpack(NULL, len, payload);
        if (!resp)
                return us_error_msg(err, EBADMSG, "guest agent WaitProcess: malformed reply");
        uint32_t s = resp->exit_status;
        unishim__agent__v1__wait_process_response__free_unpacked(resp, NULL);
        if (s > 128 + 64)
                return us_error_msg(err, EBADMSG, "guest agent WaitProcess: exit status %u", s);
        *ret_status = s;
        return 0;
}

int sandbox_reply_write_stdin(const uint8_t *payload, size_t len, size_t sent,
                              struct us_error **err)
{
        Unishim__Agent__V1__WriteStdinResponse *resp =
                unishim__agent__v1__write_stdin_response__unpack(NULL, len, payload);
        if (!resp)
                return us_error_msg(err, EBADMSG, "guest agent WriteStdin: malformed reply");
        uint32_t taken = resp->len;
        unishim__agent__v1__write_stdin_response__free_unpacked(resp, NULL);
        /* The agent answers once all of it is in: anything less is out of
         * line, and sending the rest again at once would let the guest
         * spin the shim's loop (a byte at a time: ~65k round trips for one
         * 64 KiB chunk). */
        if (taken != sent)
                return us_error_msg(err, EBADMSG, "guest agent WriteStdin: took %u of %zu bytes",
                                    taken, sent);
        return 0;
}
