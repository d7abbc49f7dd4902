/* SPDX-License-Identifier: Apache-2.0 */
/* The guest's modprobe helper's index: what the kernel's request names
 * resolve to (modules, aliases, dependencies in load order, each once), and
 * what a bad index or a hostile name gets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "guest-agent/agent-modprobe.h"

static const char good[] = "# on-demand modules\n"
                           "module llc\n"
                           "module stp llc\n"
                           "module bridge llc stp\n"
                           "module br_netfilter llc stp bridge\n"
                           "module dummy\n"
                           "module crc32c_intel\n"
                           "module crc32c_generic\n"
                           "file llc 0 4000\n"
                           "file bridge 4000 81920\n"
                           "\n"
                           "alias rtnl-link-bridge bridge\n"
                           "alias net-pf-7 bridge\n"
                           "alias crypto-crc32c crc32c_intel\n"
                           "alias crypto-crc32c crc32c_generic\n"
                           "alias ip6t_[A-Z]* dummy\n";

static char *resolve(const struct agent_modindex *idx, const char *want, int *ret)
{
        const char **names = NULL;
        struct us_error *err = NULL;
        *ret = agent_modindex_resolve(idx, want, &names, &err);
        us_error_free(err);
        if (*ret < 0)
                return NULL;
        static char out[512];
        out[0] = '\0';
        for (size_t i = 0; names[i]; i++)
                snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? " " : "",
                         names[i]);
        free(names);
        return out;
}

static void test_resolve(void **state)
{
        (void)state;
        struct agent_modindex *idx = NULL;
        assert_int_equal(agent_modindex_parse(good, strlen(good), &idx, NULL), 0);
        int r;
        assert_string_equal(resolve(idx, "bridge", &r), "llc stp bridge");
        assert_string_equal(resolve(idx, "br-netfilter", &r), "llc stp bridge br_netfilter");
        /* request_module("rtnl-link-%s"): an alias; '-' and '_' alike. */
        assert_string_equal(resolve(idx, "rtnl-link-bridge", &r), "llc stp bridge");
        assert_string_equal(resolve(idx, "rtnl_link_bridge", &r), "llc stp bridge");
        assert_string_equal(resolve(idx, "crypto-crc32c", &r), "crc32c_intel crc32c_generic");
        assert_string_equal(resolve(idx, "ip6t_REJECT", &r), "dummy");
        /* Pattern characters in the request are only characters. */
        assert_null(resolve(idx, "rtnl-link-*", &r));
        assert_int_equal(r, -ENOENT);
        assert_null(resolve(idx, "net-pf-70", &r));
        assert_int_equal(r, -ENOENT);
        /* Never a path. */
        assert_null(resolve(idx, "../../tmp/evil", &r));
        assert_int_equal(r, -ENOENT);
        assert_null(resolve(idx, "", &r));
        assert_int_equal(r, -EINVAL);
        assert_null(resolve(idx, "a b", &r));
        assert_int_equal(r, -EINVAL);
        char big[AGENT_MODNAME_MAX + 2];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_null(resolve(idx, big, &r));
        assert_int_equal(r, -EINVAL);
        agent_modindex_free(idx);
}

static void test_file(void **state)
{
        (void)state;
        struct agent_modindex *idx = NULL;
        assert_int_equal(agent_modindex_parse(good, strlen(good), &idx, NULL), 0);
        uint64_t off = 1, size = 1;
        assert_int_equal(agent_modindex_file(idx, "bridge", &off, &size), 0);
        assert_int_equal(off, 4000);
        assert_int_equal(size, 81920);
        assert_int_equal(agent_modindex_file(idx, "llc", &off, &size), 0);
        assert_int_equal(off, 0);
        /* A module line without a file line: not in the pack. */
        assert_int_equal(agent_modindex_file(idx, "stp", &off, &size), -ENOENT);
        agent_modindex_free(idx);
}

static void test_bad_index(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "module ../x\n",
                "module bridge llc/../x\n",
                "alias rtnl-link-bridge ../bridge\n",
                "alias onlyone\n",
                "modules x\n",
                "module aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                "file llc 0\n",
                "file ../llc 0 10\n",
                "file llc -1 10\n",
                "file llc 0x10 10\n",
                "file llc 010 10\n",
                "file llc 0 0\n",
                "file llc 0 16777217\n",
                "file llc 268435455 2\n",
                "file llc 18446744073709551616 1\n",
                "file llc 0 10 extra\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct agent_modindex *idx = NULL;
                struct us_error *err = NULL;
                assert_int_equal(agent_modindex_parse(bad[i], strlen(bad[i]), &idx, &err), -EINVAL);
                assert_null(idx);
                assert_non_null(err);
                us_error_free(err);
        }
        static const char nul[] = "module a\0\n";
        struct agent_modindex *idx = NULL;
        assert_int_equal(agent_modindex_parse(nul, sizeof(nul) - 1, &idx, NULL), -EINVAL);
        assert_int_equal(agent_modindex_parse(good, AGENT_MODINDEX_MAX + 1, &idx, NULL), -EFBIG);

        /* A dependency chain past the cap is refused, not truncated. */
        char *text = malloc(80 * 16 + 1);
        assert_non_null(text);
        size_t n = 0;
        n += (size_t)sprintf(text + n, "module top");
        for (int i = 0; i < AGENT_MODLOAD_MAX + 1; i++)
                n += (size_t)sprintf(text + n, " m%d", i);
        text[n++] = '\n';
        assert_int_equal(agent_modindex_parse(text, n, &idx, NULL), 0);
        int r;
        assert_null(resolve(idx, "top", &r));
        assert_int_equal(r, -E2BIG);
        agent_modindex_free(idx);
        free(text);
}

static void test_invoked(void **state)
{
        (void)state;
        assert_true(agent_modprobe_invoked("/run/modules/modprobe"));
        assert_true(agent_modprobe_invoked("modprobe"));
        assert_false(agent_modprobe_invoked("/init"));
        assert_false(agent_modprobe_invoked("/sbin/modprobe.d"));
        assert_false(agent_modprobe_invoked(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_resolve),
                cmocka_unit_test(test_file),
                cmocka_unit_test(test_bad_index),
                cmocka_unit_test(test_invoked),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
