/* SPDX-License-Identifier: Apache-2.0 */
/* The shim's decoding of guest agent replies: a hostile guest's answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "agent/agent.pb-c.h"
#include "shim/sandbox/reply.h"

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
        *len = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(*len ? *len : 1);
        protobuf_c_message_pack(m, buf);
        return buf;
}

static void read_stream_within_bounds(void **state)
{
        (void)state;
        Unishim__Agent__V1__ReadStreamResponse r = UNISHIM__AGENT__V1__READ_STREAM_RESPONSE__INIT;
        r.data.data = (uint8_t *)"hello";
        r.data.len = 5;
        r.eof = true;
        size_t len;
        uint8_t *buf = pack(&r.base, &len);
        uint8_t *data = NULL;
        size_t n = 0;
        bool eof = false;
        assert_int_equal(sandbox_reply_read_stream(buf, len, 5, &data, &n, &eof, NULL), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(data, "hello", 5);
        assert_true(eof);
        free(data);

        /* More than asked for: refused, nothing handed out. */
        struct us_error *err = NULL;
        data = NULL;
        assert_int_equal(sandbox_reply_read_stream(buf, len, 4, &data, &n, &eof, &err), -EBADMSG);
        assert_null(data);
        assert_non_null(strstr(us_error_text(err), "more than the 4 asked for"));
        us_error_free(err);
        free(buf);
}

static void empty_read_is_not_eof(void **state)
{
        (void)state;
        uint8_t *data = (uint8_t *)1;
        size_t n = 1;
        bool eof = true;
        /* The empty message: no data, not the end. */
        assert_int_equal(
                sandbox_reply_read_stream((const uint8_t *)"", 0, 10, &data, &n, &eof, NULL), 0);
        assert_null(data);
        assert_int_equal(n, 0);
        assert_false(eof);
}

static void garbage_is_refused(void **state)
{
        (void)state;
        static const uint8_t garbage[][8] = {
                {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* bad varint */
                {0x0a, 0x7f, 'a'},                                /* length past the end */
                {0x08},                                           /* truncated tag value */
        };
        static const size_t lens[] = {8, 3, 1};
        for (size_t i = 0; i < 3; i++) {
                uint8_t *data = NULL;
                size_t n;
                bool eof;
                uint32_t status = 7;
                assert_int_equal(sandbox_reply_read_stream(garbage[i], lens[i], 65536, &data, &n,
                                                           &eof, NULL),
                                 -EBADMSG);
                assert_int_equal(sandbox_reply_wait(garbage[i], lens[i], &status, NULL), -EBADMSG);
                assert_int_equal(status, 7);
                assert_int_equal(sandbox_reply_write_stdin(garbage[i], lens[i], 10, NULL),
                                 -EBADMSG);
        }
}

static void wait_status_range(void **state)
{
        (void)state;
        Unishim__Agent__V1__WaitProcessResponse r = UNISHIM__AGENT__V1__WAIT_PROCESS_RESPONSE__INIT;
        size_t len;
        uint32_t status;
        r.exit_status = 137;
        uint8_t *buf = pack(&r.base, &len);
        assert_int_equal(sandbox_reply_wait(buf, len, &status, NULL), 0);
        assert_int_equal(status, 137);
        free(buf);
        r.exit_status = 4000000000u;
        buf = pack(&r.base, &len);
        assert_int_equal(sandbox_reply_wait(buf, len, &status, NULL), -EBADMSG);
        free(buf);
}

static void stdin_cannot_take_more_than_sent(void **state)
{
        (void)state;
        Unishim__Agent__V1__WriteStdinResponse r = UNISHIM__AGENT__V1__WRITE_STDIN_RESPONSE__INIT;
        size_t len;
        r.len = 3;
        uint8_t *buf = pack(&r.base, &len);
        assert_int_equal(sandbox_reply_write_stdin(buf, len, 3, NULL), 0);
        assert_int_equal(sandbox_reply_write_stdin(buf, len, 2, NULL), -EBADMSG);
        /* Part of a write: the agent answers only once all of it is in. */
        assert_int_equal(sandbox_reply_write_stdin(buf, len, 10, NULL), -EBADMSG);
        free(buf);
        /* Nothing of a write: the guest makes no progress. */
        r.len = 0;
        buf = pack(&r.base, &len);
        assert_int_equal(sandbox_reply_write_stdin(buf, len, 10, NULL), -EBADMSG);
        assert_int_equal(sandbox_reply_write_stdin(buf, len, 0, NULL), 0);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(read_stream_within_bounds),
                cmocka_unit_test(empty_read_is_not_eof),
                cmocka_unit_test(garbage_is_refused),
                cmocka_unit_test(wait_status_range),
                cmocka_unit_test(stdin_cannot_take_more_than_sent),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
