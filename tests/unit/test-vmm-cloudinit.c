/* SPDX-License-Identifier: Apache-2.0 */
/* The cloud-init NoCloud seed of vm pods (vmm/cloudinit.h): the documents,
 * the values refused, and the volume as cloud-init finds it (label cidata,
 * files by their lower-case names, read back with isoinfo). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/cloudinit.h"

static const char *const dns[] = {"10.96.0.10", "fd00::a"};
static const char *const search[] = {"default.svc.cluster.local", "svc.cluster.local"};

static struct vmm_cloudinit_net full_net(void)
{
        return (struct vmm_cloudinit_net){
                .mac = "52:54:00:12:34:56",
                .mtu = 1450,
                .ipv4 = "169.254.75.2/30",
                .ipv4_gateway = "169.254.75.1",
                .ipv6 = "fd75:6e69:7368::2/126",
                .ipv6_gateway = "fd75:6e69:7368::1",
                .nameservers = dns,
                .n_nameservers = 2,
                .search = search,
                .n_search = 2,
        };
}

static void documents(void **state)
{
        (void)state;
        struct vmm_cloudinit_net net = full_net();
        struct vmm_cloudinit ci = {.instance_id = "0b8e7f2a-1c2d-4e5f-9a0b-1c2d3e4f5a6b",
                                   .hostname = "web-0",
                                   .net = &net};
        _cleanup_free_ char *meta = NULL, *network = NULL, *user = NULL;
        struct us_error *err = NULL;

        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), 0);
        assert_string_equal(meta, "instance-id: \"0b8e7f2a-1c2d-4e5f-9a0b-1c2d3e4f5a6b\"\n"
                                  "local-hostname: \"web-0\"\n");
        assert_string_equal(network, "version: 2\n"
                                     "ethernets:\n"
                                     "  eth0:\n"
                                     "    match:\n"
                                     "      macaddress: \"52:54:00:12:34:56\"\n"
                                     "    set-name: eth0\n"
                                     "    mtu: 1450\n"
                                     "    addresses:\n"
                                     "      - \"169.254.75.2/30\"\n"
                                     "      - \"fd75:6e69:7368::2/126\"\n"
                                     "    routes:\n"
                                     "      - to: \"0.0.0.0/0\"\n"
                                     "        via: \"169.254.75.1\"\n"
                                     "      - to: \"::/0\"\n"
                                     "        via: \"fd75:6e69:7368::1\"\n"
                                     "    nameservers:\n"
                                     "      addresses: [\"10.96.0.10\", \"fd00::a\"]\n"
                                     "      search: [\"default.svc.cluster.local\", "
                                     "\"svc.cluster.local\"]\n");
        /* No user-data given: an empty cloud-config, valid for cloud-init. */
        assert_string_equal(user, "#cloud-config\n");
}

static void ipv4_only_and_no_network(void **state)
{
        (void)state;
        struct vmm_cloudinit_net net = {.mac = "02:00:00:00:00:01",
                                        .ipv4 = "169.254.75.2/30",
                                        .ipv4_gateway = "169.254.75.1"};
        struct vmm_cloudinit ci = {.instance_id = "uid", .hostname = "h", .net = &net};
        char *meta = NULL, *network = NULL, *user = NULL;
        struct us_error *err = NULL;

        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), 0);
        assert_null(strstr(network, "mtu"));
        assert_null(strstr(network, "::/0"));
        assert_null(strstr(network, "nameservers"));
        assert_non_null(strstr(network, "via: \"169.254.75.1\""));
        free(meta);
        free(network);
        free(user);

        ci.net = NULL;
        ci.user_data = "#cloud-config\nruncmd: [touch, /x]\n";
        ci.user_data_len = strlen(ci.user_data);
        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), 0);
        assert_null(network);
        assert_string_equal(user, ci.user_data);
        free(meta);
        free(user);
}

/* Each bad value is refused with an error naming it: none reaches YAML. */
static void refuses_bad_values(void **state)
{
        (void)state;
        static const struct {
                const char *field, *value, *want;
        } cases[] = {
                {"instance_id", "a b", "instance-id"},
                {"instance_id", "x\"\nlocal-hostname: evil", "instance-id"},
                {"instance_id", "", "instance-id"},
                {"hostname", "web_0", "host name"},
                {"hostname", "-web", "host name"},
                {"hostname", "web-", "host name"},
                {"hostname", "a..b", "host name"},
                {"hostname", "h\nruncmd: [reboot]", "host name"},
                {"hostname", "0123456789012345678901234567890123456789012345678901234567890123",
                 "host name"},
                {"mac", "52:54:00:12:34", "MAC"},
                {"mac", "52:54:00:12:34:5g", "MAC"},
                {"mac", "52-54-00-12-34-56", "MAC"},
                {"ipv4", "169.254.75.2", "IPv4 address"},
                {"ipv4", "169.254.75.2/33", "IPv4 address"},
                {"ipv4", "fd00::1/64", "IPv4 address"},
                {"ipv4", "1.2.3.4/3x", "IPv4 address"},
                {"ipv6", "fd00::1/129", "IPv6 address"},
                {"ipv4_gateway", "1.2.3", "IPv4 gateway"},
                {"ipv6_gateway", "fd00::\"", "IPv6 gateway"},
                {"dns", "8.8.8.8\"", "name server"},
                {"search", "a\"b", "search domain"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct vmm_cloudinit_net net = full_net();
                struct vmm_cloudinit ci = {.instance_id = "uid", .hostname = "h", .net = &net};
                const char *one_dns[1], *one_search[1];
                const char *f = cases[i].field, *v = cases[i].value;
                if (!strcmp(f, "instance_id"))
                        ci.instance_id = v;
                else if (!strcmp(f, "hostname"))
                        ci.hostname = v;
                else if (!strcmp(f, "mac"))
                        net.mac = v;
                else if (!strcmp(f, "ipv4"))
                        net.ipv4 = v;
                else if (!strcmp(f, "ipv6"))
                        net.ipv6 = v;
                else if (!strcmp(f, "ipv4_gateway"))
                        net.ipv4_gateway = v;
                else if (!strcmp(f, "ipv6_gateway"))
                        net.ipv6_gateway = v;
                else if (!strcmp(f, "dns")) {
                        one_dns[0] = v;
                        net.nameservers = one_dns;
                        net.n_nameservers = 1;
                } else {
                        one_search[0] = v;
                        net.search = one_search;
                        net.n_search = 1;
                }
                char *meta = NULL, *network = NULL, *user = NULL;
                struct us_error *err = NULL;
                int r = vmm_cloudinit_documents(&ci, &meta, &network, &user, &err);
                if (r != -EINVAL || !strstr(us_error_text(err), cases[i].want))
                        fail_msg("%s '%s': r=%d, %s", f, v, r, us_error_text(err));
                assert_null(meta);
                us_error_free(err);
        }

        /* A gateway without an address of its family; too many servers. */
        struct vmm_cloudinit_net net = full_net();
        struct vmm_cloudinit ci = {.instance_id = "uid", .hostname = "h", .net = &net};
        char *meta = NULL, *network = NULL, *user = NULL;
        struct us_error *err = NULL;
        net.ipv6 = NULL;
        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), -EINVAL);
        err = us_error_free(err);
        net = full_net();
        static const char *const four[] = {"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"};
        net.nameservers = four;
        net.n_nameservers = 4;
        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), -EINVAL);
        err = us_error_free(err);
        /* user-data past the library's bound. */
        net = full_net();
        ci.user_data = "#cloud-config\n";
        ci.user_data_len = VMM_CLOUDINIT_USER_DATA_MAX + 1;
        assert_int_equal(vmm_cloudinit_documents(&ci, &meta, &network, &user, &err), -EFBIG);
        us_error_free(err);
}

struct dir {
        char path[64];
        int fd;
};

static int dir_setup(void **state)
{
        struct dir *d = calloc(1, sizeof(*d));
        assert_non_null(d);
        snprintf(d->path, sizeof(d->path), "/tmp/test-vmm-cloudinit-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        d->fd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(d->fd >= 0);
        *state = d;
        return 0;
}

static int dir_teardown(void **state)
{
        struct dir *d = *state;
        char cmd[128];
        close(d->fd);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
        assert_int_equal(system(cmd), 0);
        free(d);
        return 0;
}

/* Output of a shell command, NUL-terminated, at most 4 KiB. */
static char *run(const char *cmd)
{
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char *buf = calloc(1, 4096);
        assert_non_null(buf);
        size_t n = fread(buf, 1, 4095, p);
        buf[n] = '\0';
        pclose(p);
        return buf;
}

static void seed_volume(void **state)
{
        struct dir *d = *state;
        struct vmm_cloudinit_net net = full_net();
        struct vmm_cloudinit ci = {.instance_id = "pod-uid-1",
                                   .hostname = "web-0",
                                   .net = &net,
                                   .user_data = "#cloud-config\nwrite_files:\n- path: /x\n",
                                   .user_data_len = 38};
        struct us_error *err = NULL;
        char cmd[256];

        assert_int_equal(vmm_cloudinit_seed_write(&ci, d->fd, "seed.iso", &err), 0);
        struct stat st;
        assert_int_equal(fstatat(d->fd, "seed.iso", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size % 2048, 0);

        /* Not replaced: a second write is refused. */
        assert_int_equal(vmm_cloudinit_seed_write(&ci, d->fd, "seed.iso", &err), -EEXIST);
        err = us_error_free(err);
        /* The same input gives the same bytes. */
        assert_int_equal(vmm_cloudinit_seed_write(&ci, d->fd, "again.iso", &err), 0);
        snprintf(cmd, sizeof(cmd), "cmp '%s/seed.iso' '%s/again.iso' && echo same", d->path,
                 d->path);
        _cleanup_free_ char *same = run(cmd);
        assert_string_equal(same, "same\n");

        /* Fixed times, not the clock's: the same input gives the same bytes
         * on any day (two writes within one second would match anyway).
         * The primary volume descriptor (sector 16) records its creation
         * and modification dates at bytes 813 and 830. */
        {
                char dates[34] = "";
                int fd = openat(d->fd, "seed.iso", O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(pread(fd, dates, 33, 16 * 2048 + 813), 33);
                close(fd);
                assert_memory_equal(dates, "2000010100000000", 16);
                assert_memory_equal(dates + 17, "2000010100000000", 16);
        }
        /* cloud-init finds the seed by blkid's label. */
        snprintf(cmd, sizeof(cmd), "blkid -p -o value -s LABEL '%s/seed.iso'", d->path);
        _cleanup_free_ char *blkid_label = run(cmd);
        assert_string_equal(blkid_label, "cidata\n");

        if (access("/usr/bin/isoinfo", X_OK) != 0)
                unit_skip("isoinfo missing (apt package genisoimage): volume not read back");
        /* What cloud-init's NoCloud looks for: the label, then the files. */
        snprintf(cmd, sizeof(cmd), "isoinfo -d -i '%s/seed.iso' | sed -n 's/^Volume id: //p'",
                 d->path);
        _cleanup_free_ char *label = run(cmd);
        assert_string_equal(label, "cidata\n");
        snprintf(cmd, sizeof(cmd), "isoinfo -R -f -i '%s/seed.iso' | sort", d->path);
        _cleanup_free_ char *files = run(cmd);
        assert_string_equal(files, "/meta-data\n/network-config\n/user-data\n");
        snprintf(cmd, sizeof(cmd), "isoinfo -R -i '%s/seed.iso' -x /meta-data", d->path);
        _cleanup_free_ char *meta = run(cmd);
        assert_string_equal(meta, "instance-id: \"pod-uid-1\"\nlocal-hostname: \"web-0\"\n");
        snprintf(cmd, sizeof(cmd), "isoinfo -R -i '%s/seed.iso' -x /user-data", d->path);
        _cleanup_free_ char *user = run(cmd);
        assert_string_equal(user, ci.user_data);
        snprintf(cmd, sizeof(cmd), "isoinfo -R -i '%s/seed.iso' -x /network-config | head -n 5",
                 d->path);
        _cleanup_free_ char *network = run(cmd);
        assert_string_equal(network, "version: 2\nethernets:\n  eth0:\n    match:\n"
                                     "      macaddress: \"52:54:00:12:34:56\"\n");
}

static void seed_refused_leaves_nothing(void **state)
{
        struct dir *d = *state;
        struct vmm_cloudinit ci = {.instance_id = "bad id", .hostname = "h"};
        struct us_error *err = NULL;

        assert_int_equal(vmm_cloudinit_seed_write(&ci, d->fd, "seed.iso", &err), -EINVAL);
        err = us_error_free(err);
        assert_true(faccessat(d->fd, "seed.iso", F_OK, AT_SYMLINK_NOFOLLOW) < 0);
        ci.instance_id = "ok";
        assert_int_equal(vmm_cloudinit_seed_write(&ci, d->fd, "../seed.iso", &err), -EINVAL);
        us_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(documents),
                cmocka_unit_test(ipv4_only_and_no_network),
                cmocka_unit_test(refuses_bad_values),
                cmocka_unit_test_setup_teardown(seed_volume, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(seed_refused_leaves_nothing, dir_setup,
                                                dir_teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
