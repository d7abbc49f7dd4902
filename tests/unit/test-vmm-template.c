/* SPDX-License-Identifier: Apache-2.0 */
/* Template keys (vmm/template.h): every input the saved state depends on
 * changes the key, nothing else does. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/template.h"

struct fixture {
        char dir[64];
        char qemu[96], kernel[96], initrd[96], other[96];
        struct vmm_template_inputs in;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-vmm-template-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->qemu, sizeof(f->qemu), "%s/qemu", f->dir);
        snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->dir);
        snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
        snprintf(f->other, sizeof(f->other), "%s/other", f->dir);
        unit_write_file(f->qemu, "qemu bytes");
        unit_write_file(f->kernel, "kernel bytes");
        unit_write_file(f->initrd, "initrd bytes");
        unit_write_file(f->other, "kernel bytes");
        f->in = (struct vmm_template_inputs){
                .qemu_binary = f->qemu,
                .kernel = f->kernel,
                .initrd = f->initrd,
                .serial_ports = {"unishim.agent", "unishim.events"},
                .vcpus = 1,
                .memory_mib = 256,
                .accel = VMM_ACCEL_TCG,
                .tsc_khz = 2000000,
                .host_id = "release=6:6.1.0;",
        };
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        (void)unlink(f->qemu);
        (void)unlink(f->kernel);
        (void)unlink(f->initrd);
        (void)unlink(f->other);
        (void)rmdir(f->dir);
        free(f);
        return 0;
}

static void key_of(const struct vmm_template_inputs *in, char out[VMM_TEMPLATE_KEY_LEN + 1])
{
        struct us_error *err = NULL;
        _cleanup_free_ char *m = NULL;
        int r = vmm_template_manifest(in, &m, &err);
        if (r < 0)
                fail_msg("manifest: %s", us_error_text(err));
        vmm_template_key(m, out);
}

static void same_inputs_same_key(void **state)
{
        struct fixture *f = *state;
        char a[VMM_TEMPLATE_KEY_LEN + 1], b[VMM_TEMPLATE_KEY_LEN + 1];

        key_of(&f->in, a);
        key_of(&f->in, b);
        assert_string_equal(a, b);
        assert_int_equal(strlen(a), VMM_TEMPLATE_KEY_LEN);
        assert_int_equal(strspn(a, "0123456789abcdef"), VMM_TEMPLATE_KEY_LEN);

        /* Defaults are applied as the command line applies them. */
        struct vmm_template_inputs d = f->in;
        d.vcpus = 0;
        d.memory_mib = 0;
        key_of(&d, b);
        assert_string_equal(a, b);
        /* The TCG translation cache is no input of a KVM guest. */
        struct vmm_template_inputs k1 = f->in, k2 = f->in;
        k1.accel = k2.accel = VMM_ACCEL_KVM;
        k2.tcg_tb_size_mib = 64;
        k2.tsc_khz = 1;
        key_of(&k1, a);
        key_of(&k2, b);
        assert_string_equal(a, b);
}

static void every_input_changes_the_key(void **state)
{
        struct fixture *f = *state;
        char base[VMM_TEMPLATE_KEY_LEN + 1], k[VMM_TEMPLATE_KEY_LEN + 1];
        struct vmm_template_inputs v[12];
        size_t n = 0;

        key_of(&f->in, base);
        for (size_t i = 0; i < US_ELEMENTSOF(v); i++)
                v[i] = f->in;
        v[n++].qemu_binary = f->other;
        v[n++].kernel = f->other;
        v[n++].initrd = NULL;
        v[n++].cmdline_extra = "unishim.debug=1";
        v[n++].serial_ports[0] = "unishim.agent2";
        v[n++].serial_ports[1] = "unishim.events2";
        v[n++].vcpus = 2;
        v[n++].memory_mib = 512;
        v[n++].accel = VMM_ACCEL_KVM;
        v[n++].tcg_tb_size_mib = 64;
        v[n++].tsc_khz = 2000001;
        v[n++].host_id = "release=6:6.1.1;";
        assert_int_equal(n, US_ELEMENTSOF(v));
        for (size_t i = 0; i < n; i++) {
                key_of(&v[i], k);
                if (strcmp(k, base) == 0)
                        fail_msg("input %zu did not change the key", i);
                for (size_t j = 0; j < i; j++) {
                        char kj[VMM_TEMPLATE_KEY_LEN + 1];
                        key_of(&v[j], kj);
                        if (strcmp(k, kj) == 0)
                                fail_msg("inputs %zu and %zu have the same key", i, j);
                }
        }
}

/* A kernel rebuilt in place (same path, same size) is another template,
 * even if the copy kept the old mtime. */
static void rewritten_file_changes_the_key(void **state)
{
        struct fixture *f = *state;
        char before[VMM_TEMPLATE_KEY_LEN + 1], after[VMM_TEMPLATE_KEY_LEN + 1];
        struct stat st;

        key_of(&f->in, before);
        assert_int_equal(stat(f->kernel, &st), 0);
        unit_write_file(f->kernel, "KERNEL BYTES");
        /* Put mtime back as cp -p would: ctime still moves. Wait for a
         * ctime different from before (not a time: the clock's next tick). */
        struct stat now;
        do {
                struct timespec ts[2] = {st.st_atim, st.st_mtim};
                assert_int_equal(utimensat(AT_FDCWD, f->kernel, ts, 0), 0);
                assert_int_equal(stat(f->kernel, &now), 0);
        } while (now.st_ctim.tv_sec == st.st_ctim.tv_sec &&
                 now.st_ctim.tv_nsec == st.st_ctim.tv_nsec);
        assert_int_equal(now.st_size, st.st_size);
        assert_int_equal(now.st_mtim.tv_nsec, st.st_mtim.tv_nsec);
        key_of(&f->in, after);
        assert_string_not_equal(before, after);

        /* A new file renamed over the old one (another inode). */
        key_of(&f->in, before);
        assert_int_equal(rename(f->other, f->kernel), 0);
        unit_write_file(f->other, "kernel bytes");
        key_of(&f->in, after);
        assert_string_not_equal(before, after);
}

static void bad_inputs_are_refused(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char *m = NULL;
        struct vmm_template_inputs in;
        char missing[128];

        snprintf(missing, sizeof(missing), "%s/nonexistent", f->dir);
        in = f->in;
        in.kernel = missing;
        assert_int_equal(vmm_template_manifest(&in, &m, &err), -ENOENT);
        assert_non_null(strstr(us_error_text(err), "nonexistent"));
        err = us_error_free(err);

        in = f->in;
        in.kernel = "vmlinux";
        assert_int_equal(vmm_template_manifest(&in, &m, &err), -EINVAL);
        err = us_error_free(err);

        in = f->in;
        in.accel = VMM_ACCEL_AUTO;
        assert_int_equal(vmm_template_manifest(&in, &m, &err), -EINVAL);
        err = us_error_free(err);

        /* A newline could forge a line of the manifest. */
        in = f->in;
        in.cmdline_extra = "quiet\nvcpus=1:2";
        assert_int_equal(vmm_template_manifest(&in, &m, &err), -EINVAL);
        err = us_error_free(err);

        in = f->in;
        in.host_id = NULL;
        assert_int_equal(vmm_template_manifest(&in, &m, &err), -EINVAL);
        err = us_error_free(err);
        assert_null(m);
}

static void host_id_from_cpuinfo(void **state)
{
        (void)state;
        static const char cpuinfo[] = "processor\t: 0\n"
                                      "model name\t: Some CPU @ 2.70GHz\n"
                                      "flags\t\t: fpu vme sse2 avx2\n"
                                      "\n"
                                      "processor\t: 1\n"
                                      "model name\t: Other CPU\n"
                                      "flags\t\t: fpu\n";
        struct us_error *err = NULL;
        _cleanup_free_ char *id = NULL, *id2 = NULL, *bare = NULL;

        assert_int_equal(vmm_template_host_id(cpuinfo, sizeof(cpuinfo) - 1, "6.1.0", &id, &err), 0);
        assert_string_equal(id, "release=5:6.1.0;model name=18:Some CPU @ 2.70GHz;"
                                "flags=17:fpu vme sse2 avx2;");
        /* Another flag set is another host. */
        static const char other[] = "model name\t: Some CPU @ 2.70GHz\n"
                                    "flags\t\t: fpu vme sse2\n";
        assert_int_equal(vmm_template_host_id(other, sizeof(other) - 1, "6.1.0", &id2, &err), 0);
        assert_string_not_equal(id, id2);
        assert_int_equal(vmm_template_host_id(NULL, 0, NULL, &bare, &err), 0);
        assert_string_equal(bare, "release=0:;model name=0:;flags=0:;");

        /* This host's: usable in a manifest. */
        _cleanup_free_ char *mine = NULL;
        assert_int_equal(vmm_template_host_id_read(&mine, &err), 0);
        assert_non_null(strstr(mine, "release="));
}

/* The argv element after the first occurrence of opt whose value starts
 * with prefix, or NULL. */
static const char *opt_value(char **argv, const char *opt, const char *prefix)
{
        for (size_t i = 0; argv[i] && argv[i + 1]; i++)
                if (strcmp(argv[i], opt) == 0 && strncmp(argv[i + 1], prefix, strlen(prefix)) == 0)
                        return argv[i + 1];
        return NULL;
}

static char **argv_of(const struct vmm_vm_config *cfg)
{
        const struct vmm_qemu_runtime rt = {.accel = VMM_ACCEL_TCG,
                                            .qmp_fd = 10,
                                            .agent_fd = 11,
                                            .events_fd = 12,
                                            .console_fd = 13,
                                            .tsc_khz = 2000000,
                                            .private_root = cfg->private_root};
        struct us_error *err = NULL;
        char **argv = NULL;
        if (vmm_qemu_argv(cfg, &rt, &argv, &err) < 0)
                fail_msg("argv: %s", us_error_text(err));
        return argv;
}

/* A template and a clone of it from vmm_template_vm_config: the layout of
 * docs/vmm.md's recommendation, and one command line but for the RAM's
 * sharing and the clone's -incoming defer -S, whatever the instances'
 * fds, taps and share directories are. */
static void vm_config_layout(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_vm src, clone;
        struct us_error *err = NULL;
        const struct vmm_template_instance a = {.id = "t",
                                                .state_dir = "/run/t",
                                                .memory_fd = 20,
                                                .tap_fd = 21,
                                                .userns_fd = 22,
                                                .share_dir = "/var/empty-share"};
        const struct vmm_template_instance b = {.id = "t",
                                                .state_dir = "/run/pod",
                                                .memory_fd = 20,
                                                .tap_fd = 21,
                                                .userns_fd = 23,
                                                .share_dir = "/run/pod/share"};

        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_SOURCE, &a, &src, &err), 0);
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_CLONE, &b, &clone, &err), 0);
        assert_true(src.cfg.private_root && clone.cfg.private_root);
        assert_ptr_equal(src.cfg.shares, &src.share);
        assert_string_equal(clone.share.host_dir, "/run/pod/share");
        _cleanup_strv_ char **sv = argv_of(&src.cfg), **cv = argv_of(&clone.cfg);

        for (int k = 0; k < 2; k++) {
                char **v = k ? cv : sv;
                assert_non_null(opt_value(v, "-fsdev", "local,id=fs0,path=/share/0,"));
                assert_string_equal(opt_value(v, "-device", "virtio-9p-device"),
                                    "virtio-9p-device,fsdev=fs0,mount_tag=" VMM_TEMPLATE_SHARE_TAG);
                assert_string_equal(opt_value(v, "-netdev", "tap"), "tap,id=net0,fd=21");
                assert_string_equal(opt_value(v, "-device", "virtio-net"),
                                    "virtio-net-device,netdev=net0,mac=" VMM_TEMPLATE_MAC);
                assert_string_equal(opt_value(v, "-device", "virtio-rng"), "virtio-rng-device");
                /* Both as root of a user namespace: 9p the same way. */
                assert_non_null(strstr(opt_value(v, "-fsdev", "local,id=fs0,"),
                                       "security_model=passthrough,multidevs=remap"));
                /* Free page reporting in both: the clone's discards stay
                 * in its private mapping (vmm_qemu_clone_filter). */
                assert_string_equal(opt_value(v, "-device", "virtio-balloon"),
                                    "virtio-balloon-device,free-page-reporting=on,"
                                    "deflate-on-oom=off");
                assert_non_null(strstr(opt_value(v, "-append", ""), " init_on_free=0"));
                assert_null(opt_value(v, "-device", "vhost-user-fs"));
                assert_string_equal(opt_value(v, "-kernel", ""), "/boot/kernel");
                /* No instance's path: the share is bound at /share/0. */
                for (size_t i = 0; v[i]; i++) {
                        assert_null(strstr(v[i], "/run/pod"));
                        assert_null(strstr(v[i], "/var/empty-share"));
                }
        }
        size_t i = 0, j = 0;
        for (; sv[i]; i++, j++) {
                if (strncmp(sv[i], "memory-backend-file", 19) == 0) {
                        assert_non_null(strstr(sv[i], "share=on"));
                        assert_non_null(strstr(cv[j], "share=off"));
                        continue;
                }
                assert_string_equal(sv[i], cv[j]);
        }
        assert_string_equal(cv[j], "-incoming");
        assert_string_equal(cv[j + 1], "defer");
        assert_string_equal(cv[j + 2], "-S");
        assert_null(cv[j + 3]);

        /* Refused: no role, a low fd, no tap, a relative share. */
        struct vmm_template_instance bad = a;
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_NONE, &a, &src, &err),
                         -EINVAL);
        err = us_error_free(err);
        bad.memory_fd = 2;
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_SOURCE, &bad, &src, &err),
                         -EINVAL);
        err = us_error_free(err);
        bad = a;
        bad.tap_fd = -1;
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_SOURCE, &bad, &src, &err),
                         -EINVAL);
        err = us_error_free(err);
        bad = a;
        bad.userns_fd = -1;
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_SOURCE, &bad, &src, &err),
                         -EINVAL);
        err = us_error_free(err);
        bad = a;
        bad.share_dir = "share";
        assert_int_equal(vmm_template_vm_config(&f->in, VMM_TEMPLATE_SOURCE, &bad, &src, &err),
                         -EINVAL);
        assert_non_null(strstr(us_error_text(err), "share"));
        err = us_error_free(err);
}

/* A manifest's fields read back: what `template list` prints. */
static void manifest_fields(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        _cleanup_free_ char *m = NULL, *kernel = NULL, *mem = NULL, *cmdline = NULL;
        char *none = NULL;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        assert_int_equal(vmm_template_manifest_field(m, "kernel", &kernel), 0);
        assert_string_equal(kernel, f->kernel);
        assert_int_equal(vmm_template_manifest_field(m, "memory_mib", &mem), 0);
        assert_string_equal(mem, "256");
        assert_int_equal(vmm_template_manifest_field(m, "cmdline", &cmdline), 0);
        assert_string_equal(cmdline, "");
        assert_int_equal(vmm_template_manifest_field(m, "nosuch", &none), -ENOENT);
        assert_int_equal(vmm_template_manifest_field("kernel=99:/x\n", "kernel", &none), -EINVAL);
        assert_int_equal(vmm_template_manifest_field("kernel=2:/xy\n", "kernel", &none), -EINVAL);
        assert_int_equal(vmm_template_manifest_field("kernel=/x\n", "kernel", &none), -EINVAL);
        assert_null(none);
}

/* Expects vmm_template_manifest_current to call m stale, naming `words`. */
static void expect_stale(const char *m, const char *host, const char *words)
{
        _cleanup_free_ char *why = NULL;
        assert_int_equal(vmm_template_manifest_current(m, host, &why), 0);
        assert_non_null(why);
        if (!strstr(why, words))
                fail_msg("stale for \"%s\", expected \"%s\"", why, words);
}

/* A manifest stays current while its files stat as recorded on its host
 * and layout; anything else makes it stale, with the reason. */
static void manifest_current(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        _cleanup_free_ char *m = NULL, *no_initrd = NULL, *why = NULL;
        const char *host = f->in.host_id;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        assert_int_equal(vmm_template_manifest_current(m, host, &why), 1);
        assert_null(why);
        f->in.initrd = NULL;
        assert_int_equal(vmm_template_manifest(&f->in, &no_initrd, &err), 0);
        assert_int_equal(vmm_template_manifest_current(no_initrd, host, &why), 1);
        assert_null(why);

        expect_stale(m, "release=6:6.1.1;", "another host");
        /* Saved by an older layout. */
        _cleanup_free_ char *old = strdup(m);
        char *layout = strstr(old, "layout=1:");
        assert_non_null(layout);
        layout[strlen("layout=1:")] = '3';
        expect_stale(old, host, "layout is 3");
        expect_stale("host=4:test\n", "test", "layout is unknown");

        /* Rewritten in place (another size: the same mtime tick would not
         * tell), replaced by a copy (another inode), gone. */
        unit_write_file(f->kernel, "a longer kernel");
        expect_stale(m, host, "kernel");
        expect_stale(m, host, "replaced or rewritten");
        _cleanup_free_ char *m2 = NULL;
        assert_int_equal(vmm_template_manifest(&f->in, &m2, &err), 0);
        assert_int_equal(vmm_template_manifest_current(m2, host, &why), 1);
        assert_int_equal(rename(f->other, f->qemu), 0);
        expect_stale(m2, host, "qemu");
        unit_write_file(f->other, "kernel bytes");
        _cleanup_free_ char *m3 = NULL;
        f->in.initrd = f->initrd;
        assert_int_equal(vmm_template_manifest(&f->in, &m3, &err), 0);
        assert_int_equal(unlink(f->initrd), 0);
        expect_stale(m3, host, "initrd");
        expect_stale(m3, host, "is gone");
        unit_write_file(f->initrd, "initrd bytes");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(same_inputs_same_key, setup, teardown),
                cmocka_unit_test_setup_teardown(every_input_changes_the_key, setup, teardown),
                cmocka_unit_test_setup_teardown(rewritten_file_changes_the_key, setup, teardown),
                cmocka_unit_test_setup_teardown(bad_inputs_are_refused, setup, teardown),
                cmocka_unit_test(host_id_from_cpuinfo),
                cmocka_unit_test_setup_teardown(vm_config_layout, setup, teardown),
                cmocka_unit_test_setup_teardown(manifest_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(manifest_current, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
