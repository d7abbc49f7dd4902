/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "unit.h"

#include "base/sha256.h"

static void check(const char *in, size_t len, const char *want)
{
        char hex[65];
        us_sha256_hex(in, len, hex);
        assert_string_equal(hex, want);
}

static void known_vectors(void **state)
{
        (void)state;
        check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        /* 56 bytes: the padding spills into a second block. */
        const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        check(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void containerd_socket_name(void **state)
{
        (void)state;
        /* What containerd 1.6's shim.SocketAddress hashes. */
        const char *s = "/run/containerd/containerd.sock/default/t1";
        char hex[65];
        us_sha256_hex(s, strlen(s), hex);
        assert_string_equal(hex,
                            "df6a0c5cd2e9a1a16d9a3f2447365d9fc6021bc1d3d9a4caa2f5b2c4f773758f");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(known_vectors),
                cmocka_unit_test(containerd_socket_name),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
