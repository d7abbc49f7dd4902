/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cri/client-grpc.c and cri/client.c without a server: request packing,
 * reply byte buffers (hostile ones included), gRPC status to errno and
 * message, argument checks, and a dead endpoint. The calls against a real
 * containerd are the end-to-end test (docs/unishimctl.md).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "cri/client-grpc.h"
#include "cri/client.h"

static int setup(void **state)
{
        (void)state;
        grpc_init();
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        grpc_shutdown();
        return 0;
}

static void pack_unpack_round_trip(void **state)
{
        (void)state;
        Runtime__V1__VersionResponse v = RUNTIME__V1__VERSION_RESPONSE__INIT;
        v.version = (char *)"0.1.0";
        v.runtime_name = (char *)"containerd";
        v.runtime_api_version = (char *)"v1";
        grpc_byte_buffer *b = NULL;
        struct us_error *err = NULL;
        assert_int_equal(cri_grpc_pack(&v.base, &b, &err), 0);
        assert_non_null(b);
        assert_int_equal(grpc_byte_buffer_length(b), protobuf_c_message_get_packed_size(&v.base));

        ProtobufCMessage *m = NULL;
        assert_int_equal(cri_grpc_unpack(b, &runtime__v1__version_response__descriptor,
                                         CRI_GRPC_MAX_RECV, &m, &err),
                         0);
        Runtime__V1__VersionResponse *back = (Runtime__V1__VersionResponse *)m;
        assert_string_equal(back->runtime_name, "containerd");
        assert_string_equal(back->runtime_api_version, "v1");
        assert_string_equal(back->runtime_version, ""); /* absent = empty */
        cri_message_free(m);
        grpc_byte_buffer_destroy(b);
        assert_null(err);
}

static void empty_message(void **state)
{
        (void)state;
        /* StartContainerResponse {} is zero bytes on the wire. */
        Runtime__V1__StartContainerResponse e = RUNTIME__V1__START_CONTAINER_RESPONSE__INIT;
        grpc_byte_buffer *b = NULL;
        assert_int_equal(cri_grpc_pack(&e.base, &b, NULL), 0);
        assert_int_equal(grpc_byte_buffer_length(b), 0);
        ProtobufCMessage *m = NULL;
        assert_int_equal(cri_grpc_unpack(b, &runtime__v1__start_container_response__descriptor,
                                         CRI_GRPC_MAX_RECV, &m, NULL),
                         0);
        cri_message_free(m);
        grpc_byte_buffer_destroy(b);
}

/* A reply split over several slices (as grpc delivers large messages). */
static void unpack_multi_slice(void **state)
{
        (void)state;
        Runtime__V1__ExecSyncResponse r = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
        static uint8_t out[100000];
        memset(out, 'o', sizeof(out));
        r.stdout.data = out;
        r.stdout.len = sizeof(out);
        r.exit_code = 7;
        size_t len = protobuf_c_message_get_packed_size(&r.base);
        uint8_t *wire = malloc(len);
        assert_non_null(wire);
        protobuf_c_message_pack(&r.base, wire);
        grpc_slice s[3] = {
                grpc_slice_from_copied_buffer((const char *)wire, 10),
                grpc_slice_from_copied_buffer((const char *)wire + 10, 50000),
                grpc_slice_from_copied_buffer((const char *)wire + 50010, len - 50010),
        };
        grpc_byte_buffer *b = grpc_raw_byte_buffer_create(s, 3);
        for (int i = 0; i < 3; i++)
                grpc_slice_unref(s[i]);
        ProtobufCMessage *m = NULL;
        assert_int_equal(cri_grpc_unpack(b, &runtime__v1__exec_sync_response__descriptor,
                                         CRI_GRPC_MAX_RECV, &m, NULL),
                         0);
        Runtime__V1__ExecSyncResponse *back = (Runtime__V1__ExecSyncResponse *)m;
        assert_int_equal(back->exit_code, 7);
        assert_int_equal(back->stdout.len, sizeof(out));
        assert_memory_equal(back->stdout.data, out, sizeof(out));
        cri_message_free(m);

        /* The same reply over a smaller limit is refused, not truncated. */
        struct us_error *err = NULL;
        m = NULL;
        assert_int_equal(
                cri_grpc_unpack(b, &runtime__v1__exec_sync_response__descriptor, 1000, &m, &err),
                -EMSGSIZE);
        assert_null(m);
        assert_non_null(strstr(us_error_text(err), "exceeds the limit of 1000"));
        us_error_free(err);
        grpc_byte_buffer_destroy(b);
        free(wire);
}

static void unpack_hostile(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        ProtobufCMessage *m = NULL;

        /* No message at all (a server that closed with OK and no reply). */
        assert_int_equal(cri_grpc_unpack(NULL, &runtime__v1__version_response__descriptor,
                                         CRI_GRPC_MAX_RECV, &m, &err),
                         -EBADMSG);
        assert_string_equal(us_error_text(err), "no reply message");
        err = us_error_free(err);

        static const struct {
                const char *name;
                const char *bytes;
                size_t len;
        } bad[] = {
                {"truncated varint", "\x08\xff\xff", 3},
                {"length past the end",
                 "\x0a\x7f"
                 "abc",
                 5},
                {"wire type 7", "\x0f", 1},
                {"field number 0", "\x02\x00", 2},
                {"truncated fixed64", "\x09\x01\x02", 3},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++) {
                grpc_slice s = grpc_slice_from_copied_buffer(bad[i].bytes, bad[i].len);
                grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
                grpc_slice_unref(s);
                m = NULL;
                int r = cri_grpc_unpack(b, &runtime__v1__version_response__descriptor,
                                        CRI_GRPC_MAX_RECV, &m, &err);
                if (r != -EBADMSG)
                        fail_msg("%s: got %d", bad[i].name, r);
                assert_null(m);
                assert_non_null(strstr(us_error_text(err), "malformed runtime.v1.VersionResponse"));
                err = us_error_free(err);
                grpc_byte_buffer_destroy(b);
        }

        /* Unknown fields (a newer server) are skipped, not an error. */
        static const char newer[] = "\x0a\x02v1"       /* version = "v1" */
                                    "\xa2\x06\x03xyz"; /* field 100, bytes */
        grpc_slice s = grpc_slice_from_copied_buffer(newer, sizeof(newer) - 1);
        grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        m = NULL;
        assert_int_equal(cri_grpc_unpack(b, &runtime__v1__version_response__descriptor,
                                         CRI_GRPC_MAX_RECV, &m, NULL),
                         0);
        assert_string_equal(((Runtime__V1__VersionResponse *)m)->version, "v1");
        cri_message_free(m);
        grpc_byte_buffer_destroy(b);
}

static void status_errno_mapping(void **state)
{
        (void)state;
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_OK), 0);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_UNKNOWN), -EIO);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_INVALID_ARGUMENT), -EINVAL);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_DEADLINE_EXCEEDED), -ETIMEDOUT);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_NOT_FOUND), -ENOENT);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_ALREADY_EXISTS), -EEXIST);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_UNIMPLEMENTED), -EOPNOTSUPP);
        assert_int_equal(cri_grpc_status_errno(GRPC_STATUS_UNAVAILABLE), -ECONNREFUSED);
        assert_int_equal(cri_grpc_status_errno((grpc_status_code)99), -EIO);
        for (int code = 1; code <= 16; code++)
                assert_true(cri_grpc_status_errno((grpc_status_code)code) < 0);
}

static void status_message_keeps_server_text(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        const char *msg = "failed to create sandbox: invalid annotation unishim.io/isolation: "
                          "\"bogus\" (allowed: container, sandbox, vm)";
        int r = cri_grpc_status_error("/runtime.v1.RuntimeService/RunPodSandbox",
                                      GRPC_STATUS_UNKNOWN, msg, strlen(msg), &err);
        assert_int_equal(r, -EIO);
        assert_int_equal(err->code, EIO);
        char want[512];
        snprintf(want, sizeof(want), "RunPodSandbox: rpc error code 2: %s", msg);
        assert_string_equal(us_error_text(err), want);
        err = us_error_free(err);

        /* Control characters and NULs from the server do not reach a terminal. */
        static const char ctl[] = "a\0b\x1b[31mc\nd";
        r = cri_grpc_status_error("Version", GRPC_STATUS_NOT_FOUND, ctl, sizeof(ctl) - 1, &err);
        assert_int_equal(r, -ENOENT);
        assert_string_equal(us_error_text(err), "Version: rpc error code 5: a?b?[31mc\nd");
        err = us_error_free(err);

        /* Huge details are bounded. */
        size_t n = CRI_GRPC_MAX_DETAILS * 4;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, 'x', n);
        r = cri_grpc_status_error(NULL, GRPC_STATUS_INTERNAL, big, n, &err);
        assert_int_equal(r, -EPROTO);
        assert_true(strlen(us_error_text(err)) < CRI_GRPC_MAX_DETAILS + 64);
        assert_non_null(strstr(us_error_text(err), "xxx..."));
        err = us_error_free(err);
        free(big);

        /* OK passed by mistake is still an error, never 0. */
        assert_true(cri_grpc_status_error("X", GRPC_STATUS_OK, "", 0, NULL) < 0);
}

static void endpoints(void **state)
{
        (void)state;
        struct cri_grpc *g = NULL;
        struct us_error *err = NULL;
        assert_int_equal(cri_grpc_new("", &g, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(cri_grpc_new("tcp://127.0.0.1:1", &g, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "only unix sockets"));
        err = us_error_free(err);
        assert_null(g);

        assert_int_equal(cri_grpc_new("/run/x.sock", &g, NULL), 0);
        assert_string_equal(cri_grpc_target(g), "unix:///run/x.sock");
        g = cri_grpc_free(g);
        assert_int_equal(cri_grpc_new("unix:///run/y.sock", &g, NULL), 0);
        assert_string_equal(cri_grpc_target(g), "unix:///run/y.sock");
        g = cri_grpc_free(g);
        assert_null(cri_grpc_free(NULL));
}

static void dead_endpoint_fails_the_call(void **state)
{
        (void)state;
        struct cri_client *c = NULL;
        struct us_error *err = NULL;
        assert_int_equal(cri_client_new("unix:///nonexistent/criclient-test.sock", &c, &err), 0);
        cri_client_set_timeout(c, 2000);
        Runtime__V1__VersionResponse *v = NULL;
        int r = cri_version(c, &v, &err);
        assert_true(r == -ECONNREFUSED || r == -ETIMEDOUT);
        assert_null(v);
        assert_non_null(strstr(us_error_text(err), "Version: rpc error code "));
        err = us_error_free(err);
        cri_client_free(c);
}

static void arguments_are_checked_before_calling(void **state)
{
        (void)state;
        struct cri_client *c = NULL;
        struct us_error *err = NULL;
        assert_int_equal(cri_client_new("/nonexistent/criclient-test.sock", &c, NULL), 0);

        const char *none[] = {NULL};
        struct cri_output out = {0};
        int code = -1;
        assert_int_equal(cri_exec_sync(c, "abc", none, 1, &out, NULL, &code, &err), -EINVAL);
        assert_null(out.data);
        assert_int_equal(code, -1);
        err = us_error_free(err);
        const char *argv[] = {"true", NULL};
        assert_int_equal(cri_exec_sync(c, "", argv, 1, NULL, NULL, NULL, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(cri_exec_sync(c, "abc", argv, -1, NULL, NULL, NULL, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(cri_stop_container(c, "abc", -5, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(cri_start_container(c, NULL, &err), -EINVAL);
        err = us_error_free(err);
        char *id = NULL;
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        assert_int_equal(cri_run_pod_sandbox(c, &cfg, "unishim", &id, &err), -EINVAL);
        assert_null(id);
        err = us_error_free(err);
        cri_client_free(c);
}

static void reply_ids_are_checked(void **state)
{
        (void)state;
        assert_int_equal(cri_check_id("X", "0caddff12fdaaac8d643994ebdb87b88", NULL), 0);
        assert_int_equal(cri_check_id("X", "a.b_c-D", NULL), 0);
        struct us_error *err = NULL;
        assert_int_equal(cri_check_id("RunPodSandbox", "", &err), -EBADMSG);
        assert_string_equal(us_error_text(err), "RunPodSandbox: empty id in reply");
        err = us_error_free(err);
        assert_int_equal(cri_check_id("X", "../../etc", NULL), -EBADMSG);
        assert_int_equal(cri_check_id("X", "a b", NULL), -EBADMSG);
        assert_int_equal(cri_check_id("X", NULL, NULL), -EBADMSG);
        char longid[200];
        memset(longid, 'a', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        assert_int_equal(cri_check_id("X", longid, NULL), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(pack_unpack_round_trip),
                cmocka_unit_test(empty_message),
                cmocka_unit_test(unpack_multi_slice),
                cmocka_unit_test(unpack_hostile),
                cmocka_unit_test(status_errno_mapping),
                cmocka_unit_test(status_message_keeps_server_text),
                cmocka_unit_test(endpoints),
                cmocka_unit_test(dead_endpoint_fails_the_call),
                cmocka_unit_test(arguments_are_checked_before_calling),
                cmocka_unit_test(reply_ids_are_checked),
        };
        return unit_exit(unit_run_group_tests(tests, setup, teardown));
}
