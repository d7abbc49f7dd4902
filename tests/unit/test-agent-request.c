/* SPDX-License-Identifier: Apache-2.0 */
/* The guest agent's request validation: hostile ids, paths, sizes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "guest-agent/agent.h"

static void test_ids(void **state)
{
        (void)state;
        assert_int_equal(agent_validate_id("id", "abc-1.2_3", NULL), 0);
        assert_int_equal(agent_validate_id("id", "", NULL), -EINVAL);
        assert_int_equal(agent_validate_id("id", "-x", NULL), -EINVAL);
        assert_int_equal(agent_validate_id("id", "a/b", NULL), -EINVAL);
        assert_int_equal(agent_validate_id("id", "../x", NULL), -EINVAL);
        char big[300];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_int_equal(agent_validate_id("id", big, NULL), -EINVAL);
}

static void test_paths(void **state)
{
        (void)state;
        assert_int_equal(agent_validate_run_path("p", "/run/unishim/shared/c1/rootfs", NULL), 0);
        assert_int_equal(agent_validate_run_path("p", "/run/unishim", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/run/unishim/", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/etc/passwd", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/run/unishim/../../etc", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/run/unishim/a//b", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/run/unishim/a/./b", NULL), -EINVAL);
        assert_int_equal(agent_validate_run_path("p", "/run/unishimx/a", NULL), -EINVAL);
}

static void test_net(void **state)
{
        (void)state;
        uint8_t mac[6], ip[16];
        int af;
        unsigned prefix;
        assert_int_equal(agent_parse_mac("aa:BB:cc:00:11:22", mac, NULL), 0);
        assert_int_equal(mac[1], 0xbb);
        assert_int_equal(agent_parse_mac("aa:bb:cc:00:11", mac, NULL), -EINVAL);
        assert_int_equal(agent_parse_mac("aa-bb-cc-00-11-22", mac, NULL), -EINVAL);
        assert_int_equal(agent_parse_ip(4, "10.0.0.2", 24, ip, &af, NULL), 0);
        assert_int_equal(agent_parse_ip(4, "10.0.0.2", 33, ip, &af, NULL), -EINVAL);
        assert_int_equal(agent_parse_ip(5, "10.0.0.2", 24, ip, &af, NULL), -EINVAL);
        assert_int_equal(agent_parse_ip(6, "10.0.0.2", 24, ip, &af, NULL), -EINVAL);
        assert_int_equal(agent_parse_cidr(6, "fd00::/64", ip, &prefix, &af, NULL), 0);
        assert_int_equal(prefix, 64);
        assert_int_equal(agent_parse_cidr(4, "", ip, &prefix, &af, NULL), 0);
        assert_int_equal(prefix, 0);
        assert_int_equal(agent_parse_cidr(4, "10.0.0.0/", ip, &prefix, &af, NULL), -EINVAL);
        assert_int_equal(agent_validate_ifname("eth0", NULL), 0);
        assert_int_equal(agent_validate_ifname("a-very-long-ifname", NULL), -EINVAL);
        assert_int_equal(agent_validate_hostname("pod-1.example", NULL), 0);
        assert_int_equal(agent_validate_hostname("bad host", NULL), -EINVAL);
        /* Pod sysctls: the pod's network and IPC namespaces only. */
        assert_int_equal(agent_validate_sysctl("net.core.somaxconn", "1024", NULL), 0);
        assert_int_equal(agent_validate_sysctl("net.ipv4.conf.eth0.forwarding", "1", NULL), 0);
        assert_int_equal(agent_validate_sysctl("kernel.shm_rmid_forced", "1", NULL), 0);
        assert_int_equal(agent_validate_sysctl("kernel.sem", "250\t32000\t32\t128", NULL), 0);
        assert_int_equal(agent_validate_sysctl("fs.mqueue.msg_max", "20", NULL), 0);
        assert_int_equal(agent_validate_sysctl("kernel.panic", "5", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("vm.swappiness", "5", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("kernel.hostname", "x", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net", "1", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net.", "1", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net..core", "1", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net.core/../../kernel.panic", "1", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net.core.x y", "1", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net.core.somaxconn", "1\n2", NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("net.core.somaxconn", NULL, NULL), -EINVAL);
        assert_int_equal(agent_validate_sysctl("kernel.msgmaxx", "1", NULL), -EINVAL);
}

static int check_msg(const char *method, const ProtobufCMessage *m)
{
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(n + 1);
        protobuf_c_message_pack(m, buf);
        struct us_error *err = NULL;
        int r = agent_request_check(method, buf, n, &err);
        us_error_free(err);
        free(buf);
        return r;
}

static void test_requests(void **state)
{
        (void)state;
        Unishim__Agent__V1__CreateContainerRequest cr =
                UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
        cr.container_id = (char *)"c1";
        cr.spec_json.data = (uint8_t *)"{}";
        cr.spec_json.len = 2;
        assert_int_equal(check_msg("CreateContainer", &cr.base), 0);
        cr.container_id = (char *)"../evil";
        assert_int_equal(check_msg("CreateContainer", &cr.base), -EINVAL);
        cr.container_id = (char *)"c1";
        cr.spec_json.len = 0;
        assert_int_equal(check_msg("CreateContainer", &cr.base), -EINVAL);
        cr.spec_json.len = 2;

        /* Pod-local dirs: a volume name, permission bits, a bounded count. */
        Unishim__Agent__V1__PodLocalDir ld[GUEST_MAX_LOCAL_DIRS + 1],
                *ldp[GUEST_MAX_LOCAL_DIRS + 1];
        for (size_t i = 0; i <= GUEST_MAX_LOCAL_DIRS; i++) {
                unishim__agent__v1__pod_local_dir__init(&ld[i]);
                ld[i].name = (char *)"cache-1.x_y";
                ld[i].mode = 02777;
                ldp[i] = &ld[i];
        }
        cr.local_dirs = ldp;
        cr.n_local_dirs = 1;
        assert_int_equal(check_msg("CreateContainer", &cr.base), 0);
        cr.n_local_dirs = GUEST_MAX_LOCAL_DIRS;
        assert_int_equal(check_msg("CreateContainer", &cr.base), 0);
        cr.n_local_dirs = GUEST_MAX_LOCAL_DIRS + 1;
        assert_int_equal(check_msg("CreateContainer", &cr.base), -EINVAL);
        cr.n_local_dirs = 1;
        char long_name[GUEST_MAX_LOCAL_DIR_NAME + 2];
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        const char *bad[] = {"", ".", "..", "a/b", "../x", "a b", long_name};
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                ld[0].name = (char *)bad[i];
                assert_int_equal(check_msg("CreateContainer", &cr.base), -EINVAL);
        }
        long_name[GUEST_MAX_LOCAL_DIR_NAME] = '\0';
        ld[0].name = long_name;
        assert_int_equal(check_msg("CreateContainer", &cr.base), 0);
        ld[0].mode = 010000; /* a file type bit */
        assert_int_equal(check_msg("CreateContainer", &cr.base), -EINVAL);
        cr.n_local_dirs = 0;

        Unishim__Agent__V1__Storage st = UNISHIM__AGENT__V1__STORAGE__INIT;
        Unishim__Agent__V1__Storage *stp = &st;
        st.source = (char *)"pod0";
        st.fstype = (char *)"virtiofs";
        st.mount_point = (char *)"/run/unishim/shared";
        Unishim__Agent__V1__AddStorageRequest as = UNISHIM__AGENT__V1__ADD_STORAGE_REQUEST__INIT;
        as.storages = &stp;
        as.n_storages = 1;
        assert_int_equal(check_msg("AddStorage", &as.base), 0);
        st.mount_point = (char *)"/etc";
        assert_int_equal(check_msg("AddStorage", &as.base), -EINVAL);
        st.mount_point = (char *)"/run/unishim/shared";
        st.fstype = (char *)"ext4";
        assert_int_equal(check_msg("AddStorage", &as.base), -EINVAL);

        Unishim__Agent__V1__ReadStreamRequest rs = UNISHIM__AGENT__V1__READ_STREAM_REQUEST__INIT;
        rs.container_id = (char *)"c1";
        assert_int_equal(check_msg("ReadStream", &rs.base), -EINVAL); /* unspecified stream */
        rs.stream = UNISHIM__AGENT__V1__STREAM__STREAM_STDERR;
        assert_int_equal(check_msg("ReadStream", &rs.base), 0);

        Unishim__Agent__V1__SignalProcessRequest sp =
                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
        sp.container_id = (char *)"c1";
        sp.signal = 65;
        assert_int_equal(check_msg("SignalProcess", &sp.base), -EINVAL);

        /* Restore: 32..512 bytes of host entropy, a clock not before 1970. */
        uint8_t entropy[513] = {0};
        Unishim__Agent__V1__RestoreRequest rr = UNISHIM__AGENT__V1__RESTORE_REQUEST__INIT;
        rr.entropy.data = entropy;
        rr.entropy.len = 32;
        rr.realtime_ns = 1;
        assert_int_equal(check_msg("Restore", &rr.base), 0);
        rr.entropy.len = 512;
        assert_int_equal(check_msg("Restore", &rr.base), 0);
        rr.entropy.len = 31;
        assert_int_equal(check_msg("Restore", &rr.base), -EINVAL);
        rr.entropy.len = 513;
        assert_int_equal(check_msg("Restore", &rr.base), -EINVAL);
        rr.entropy.len = 64;
        rr.realtime_ns = -1;
        assert_int_equal(check_msg("Restore", &rr.base), -EINVAL);

        static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        assert_int_equal(agent_request_check("ReadStream", garbage, sizeof(garbage), NULL),
                         -EBADMSG);
        assert_int_equal(agent_request_check("Nope", garbage, 0, NULL), -ENOSYS);
}

/* agent_local_dir_make: a new dir gets the owner and mode (setgid kept
 * across the chown), an existing dir is left as it is, anything else of
 * that name is refused and left. */
static void test_local_dir_make(void **state)
{
        (void)state;
        if (geteuid() != 0)
                unit_skip("agent_local_dir_make chowns: needs root");
        char tmpl[] = "/tmp/test-local-dir.XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        int base = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(base >= 0);
        struct stat st;
        assert_int_equal(agent_local_dir_make(base, "cache", 02775, 1000, 2000, NULL), 0);
        assert_int_equal(fstatat(base, "cache", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 02775);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(st.st_gid, 2000);
        /* Another container's create: left as the first one made it. */
        assert_int_equal(fchmodat(base, "cache", 0700, 0), 0);
        assert_int_equal(agent_local_dir_make(base, "cache", 0777, 0, 0, NULL), 0);
        assert_int_equal(fstatat(base, "cache", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(st.st_uid, 1000);
        /* Not a directory: refused, not followed, not replaced. */
        assert_int_equal(symlinkat("/etc", base, "link"), 0);
        assert_int_equal(agent_local_dir_make(base, "link", 0777, 0, 0, NULL), -EEXIST);
        assert_int_equal(fstatat(base, "link", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(unlinkat(base, "link", 0), 0);
        assert_int_equal(unlinkat(base, "cache", AT_REMOVEDIR), 0);
        close(base);
        assert_int_equal(rmdir(tmpl), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_net),
                cmocka_unit_test(test_requests),
                cmocka_unit_test(test_local_dir_make),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
