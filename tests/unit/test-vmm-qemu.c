/* SPDX-License-Identifier: Apache-2.0 */
/* QEMU/virtiofsd command lines (pure) and the accelerator decision with fake
 * /proc/cpuinfo and /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/jail.h"
#include "base/loop.h"
#include "vmm/qemu.h"

static char *joined(char **argv)
{
        size_t len = 1;
        for (char **a = argv; *a; a++)
                len += strlen(*a) + 1;
        char *s = calloc(1, len), *p = s;
        for (char **a = argv; *a; a++)
                p += sprintf(p, "%s%s", a == argv ? "" : " ", *a);
        return s;
}

/* Index of an argument, or -1. */
static int find_arg(char **argv, const char *arg)
{
        for (int i = 0; argv[i]; i++)
                if (strcmp(argv[i], arg) == 0)
                        return i;
        return -1;
}

/* The value after `opt` that starts with `prefix` (options may repeat). */
static const char *opt_value(char **argv, const char *opt, const char *prefix)
{
        for (int i = 0; argv[i] && argv[i + 1]; i++)
                if (strcmp(argv[i], opt) == 0 && strncmp(argv[i + 1], prefix, strlen(prefix)) == 0)
                        return argv[i + 1];
        return NULL;
}

static struct vmm_vm_config base_config(void)
{
        return (struct vmm_vm_config){
                .id = "pod1",
                .state_dir = "/run/unishim/pod1",
                .kernel = "/usr/lib/unishim/vmlinux",
                .initrd = "/usr/lib/unishim/initramfs.img",
                .serial_ports = {"unishim.agent", "unishim.events"},
                .tap_fd = -1,
        };
}

/* TCG with the sockets and the console pipe at 5..8. */
static struct vmm_qemu_runtime tcg_runtime(void)
{
        return (struct vmm_qemu_runtime){.accel = VMM_ACCEL_TCG,
                                         .qmp_fd = 5,
                                         .agent_fd = 6,
                                         .events_fd = 7,
                                         .console_fd = 8};
}

static void tcg_defaults(void **state)
{
        (void)state;
        struct vmm_vm_config cfg = base_config();
        struct vmm_qemu_runtime rt = tcg_runtime();
        rt.tsc_khz = 2596146;
        _cleanup_strv_ char **argv = NULL;
        struct us_error *err = NULL;

        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &argv, &err), 0);
        assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");
        assert_string_equal(opt_value(argv, "-M", "microvm"),
                            "microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on");
        assert_string_equal(opt_value(argv, "-accel", ""), "tcg,tb-size=32");
        assert_string_equal(opt_value(argv, "-cpu", ""), "max");
        assert_string_equal(opt_value(argv, "-m", ""), "256M");
        assert_string_equal(opt_value(argv, "-smp", ""), "1");
        assert_string_equal(opt_value(argv, "-global", ""), "virtio-mmio.force-legacy=false");
        assert_string_equal(
                opt_value(argv, "-sandbox", ""),
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        assert_true(find_arg(argv, "-nodefaults") > 0);
        assert_true(find_arg(argv, "-no-user-config") > 0);
        assert_true(find_arg(argv, "-no-reboot") > 0);
        assert_true(find_arg(argv, "-nographic") > 0);
        assert_int_equal(find_arg(argv, "-daemonize"), -1);
        assert_int_equal(find_arg(argv, "-object"), -1); /* no memfd without virtio-fs */
        assert_int_equal(find_arg(argv, "-netdev"), -1);
        assert_string_equal(opt_value(argv, "-kernel", ""), "/usr/lib/unishim/vmlinux");
        assert_string_equal(opt_value(argv, "-initrd", ""), "/usr/lib/unishim/initramfs.img");
        {
                /* In its private root QEMU finds them where vmm/jail.h binds them. */
                struct vmm_qemu_runtime jailed = rt;
                _cleanup_strv_ char **jargv = NULL;
                jailed.private_root = true;
                assert_int_equal(vmm_qemu_argv(&cfg, &jailed, &jargv, &err), 0);
                assert_string_equal(opt_value(jargv, "-kernel", ""), VMM_JAIL_KERNEL);
                assert_string_equal(opt_value(jargv, "-initrd", ""), VMM_JAIL_INITRD);
        }
        assert_string_equal(opt_value(argv, "-append", ""),
                            "console=ttyS0 reboot=t panic=-1 pci=off quiet cryptomgr.notests "
                            "tsc_early_khz=2596146");
        /* The console pipe as an fd set; append=on, or QEMU 7.2 ftruncate()s
         * the pipe and fails. */
        assert_string_equal(opt_value(argv, "-add-fd", ""), "fd=8,set=1");
        assert_string_equal(opt_value(argv, "-chardev", "file"),
                            "file,id=console,path=/dev/fdset/1,append=on");
        assert_string_equal(opt_value(argv, "-serial", ""), "chardev:console");
        assert_string_equal(opt_value(argv, "-chardev", "socket,id=qmp"),
                            "socket,id=qmp,fd=5,server=on,wait=off");
        assert_string_equal(opt_value(argv, "-mon", ""), "chardev=qmp,mode=control");
        assert_string_equal(opt_value(argv, "-chardev", "socket,id=agent"),
                            "socket,id=agent,fd=6,server=on,wait=off");
        assert_string_equal(opt_value(argv, "-device", "virtserialport"),
                            "virtserialport,chardev=agent,name=unishim.agent");
        assert_string_equal(opt_value(argv, "-chardev", "socket,id=events"),
                            "socket,id=events,fd=7,server=on,wait=off");
        assert_string_equal(opt_value(argv, "-device", "virtserialport,chardev=events"),
                            "virtserialport,chardev=events,name=unishim.events");
        assert_non_null(opt_value(argv, "-device", "virtio-serial-device"));
        /* Freed guest pages go back to the host; the balloon is never
         * inflated and never gives the guest memory beyond -m. */
        assert_string_equal(opt_value(argv, "-device", "virtio-balloon-device"),
                            "virtio-balloon-device,free-page-reporting=on,deflate-on-oom=off");
        /* Never through a shell: no argument is a shell command line. */
        assert_int_equal(find_arg(argv, "sh"), -1);
        us_error_free(err);
}

static void kvm_virtiofs_net(void **state)
{
        (void)state;
        struct vmm_share shares[] = {
                {.tag = "rootfs", .host_dir = "/run/containerd/x/rootfs"},
                {.tag = "vol.1", .host_dir = "/var/lib/v", .readonly = true},
        };
        struct vmm_vm_config cfg = base_config();
        cfg.vcpus = 2;
        cfg.memory_mib = 512;
        cfg.shares = shares;
        cfg.n_shares = 2;
        cfg.tap_fd = 9;
        cfg.mac = "02:00:0a:00:00:02";
        cfg.cmdline_extra = "unishim.debug=1";
        cfg.qemu_binary = "/opt/qemu";
        cfg.id = "a,b";
        int fs_fds[] = {11, 12};
        struct vmm_qemu_runtime rt = {.accel = VMM_ACCEL_KVM,
                                      .qmp_fd = 5,
                                      .agent_fd = 6,
                                      .events_fd = 7,
                                      .console_fd = 10,
                                      .fs_fds = fs_fds,
                                      .tsc_khz = 1000};
        _cleanup_strv_ char **argv = NULL;

        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &argv, NULL), 0);
        _cleanup_free_ char *all = joined(argv);
        assert_string_equal(argv[0], "/opt/qemu");
        assert_string_equal(opt_value(argv, "-name", ""), "unishim-a,,b,debug-threads=on");
        assert_string_equal(opt_value(argv, "-accel", ""), "kvm");
        assert_string_equal(opt_value(argv, "-cpu", ""), "host");
        assert_string_equal(
                opt_value(argv, "-M", "microvm"),
                "microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on,memory-backend=mem");
        assert_string_equal(opt_value(argv, "-object", ""),
                            "memory-backend-memfd,id=mem,size=512M,share=on");
        assert_string_equal(opt_value(argv, "-m", ""), "512M");
        assert_string_equal(opt_value(argv, "-smp", ""), "2");
        /* tsc_early_khz only for TCG. */
        assert_string_equal(
                opt_value(argv, "-append", ""),
                "console=ttyS0 reboot=t panic=-1 pci=off quiet cryptomgr.notests unishim.debug=1");
        assert_string_equal(opt_value(argv, "-netdev", ""), "tap,id=net0,fd=9");
        assert_string_equal(opt_value(argv, "-device", "virtio-net"),
                            "virtio-net-device,netdev=net0,mac=02:00:0a:00:00:02");
        assert_string_equal(opt_value(argv, "-chardev", "socket,id=fs0"), "socket,id=fs0,fd=11");
        assert_string_equal(opt_value(argv, "-chardev", "socket,id=fs1"), "socket,id=fs1,fd=12");
        assert_string_equal(opt_value(argv, "-device", "vhost-user-fs-device,chardev=fs0"),
                            "vhost-user-fs-device,chardev=fs0,tag=rootfs");
        assert_string_equal(opt_value(argv, "-device", "vhost-user-fs-device,chardev=fs1"),
                            "vhost-user-fs-device,chardev=fs1,tag=vol.1");
        assert_string_equal(opt_value(argv, "-add-fd", ""), "fd=10,set=1");
        assert_null(strstr(all, "-fsdev"));

        _cleanup_strv_ char **vfs = NULL;
        assert_int_equal(vmm_virtiofsd_argv(&cfg, &shares[0], 11, &vfs, NULL), 0);
        _cleanup_free_ char *v = joined(vfs);
        assert_string_equal(v,
                            "/usr/lib/qemu/virtiofsd --fd=11 -o source=/run/containerd/x/rootfs -o "
                            "sandbox=namespace -o cache=auto -o log_level=warn");

        /* In a user namespace it finds its share where it is attached for
         * it, in a mount namespace of its own. */
        cfg.virtiofsd_userns = true;
        cfg.virtiofsd_userns_fd = 5;
        _cleanup_strv_ char **uvfs = NULL;
        assert_int_equal(vmm_virtiofsd_argv(&cfg, &shares[0], 11, &uvfs, NULL), 0);
        _cleanup_free_ char *u = joined(uvfs);
        assert_string_equal(u, "/usr/lib/qemu/virtiofsd --fd=11 -o source=/mnt -o "
                               "sandbox=namespace -o cache=auto -o log_level=warn");
}

static void ninep(void **state)
{
        (void)state;
        struct vmm_share shares[] = {
                {.tag = "rootfs", .host_dir = "/srv/a,b"},
                {.tag = "ro", .host_dir = "/srv/ro", .readonly = true},
        };
        struct vmm_vm_config cfg = base_config();
        cfg.share_type = VMM_SHARE_9P;
        cfg.shares = shares;
        cfg.n_shares = 2;
        cfg.tcg_tb_size_mib = 16;
        struct vmm_qemu_runtime rt = {.accel = VMM_ACCEL_TCG,
                                      .qmp_fd = 3,
                                      .agent_fd = 4,
                                      .events_fd = 5,
                                      .console_fd = 6};
        _cleanup_strv_ char **argv = NULL;

        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &argv, NULL), 0);
        assert_string_equal(opt_value(argv, "-accel", ""), "tcg,tb-size=16");
        assert_int_equal(find_arg(argv, "-object"), -1);
        assert_string_equal(opt_value(argv, "-append", ""),
                            "console=ttyS0 reboot=t panic=-1 pci=off quiet cryptomgr.notests");
        assert_string_equal(opt_value(argv, "-fsdev", "local,id=fs0"),
                            "local,id=fs0,path=/srv/a,,b,security_model=none");
        assert_string_equal(opt_value(argv, "-fsdev", "local,id=fs1"),
                            "local,id=fs1,path=/srv/ro,security_model=none,readonly=on");
        assert_string_equal(opt_value(argv, "-device", "virtio-9p"),
                            "virtio-9p-device,fsdev=fs0,mount_tag=rootfs");
        {
                /* In its private root: the shares by index, where vmm/jail.h
                 * binds them, never the host path (the same argv for every
                 * pod, as a VM template needs). */
                struct vmm_qemu_runtime jailed = rt;
                _cleanup_strv_ char **jargv = NULL;
                jailed.private_root = true;
                assert_int_equal(vmm_qemu_argv(&cfg, &jailed, &jargv, NULL), 0);
                assert_string_equal(opt_value(jargv, "-fsdev", "local,id=fs0"),
                                    "local,id=fs0,path=/share/0,security_model=none");
                assert_string_equal(opt_value(jargv, "-fsdev", "local,id=fs1"),
                                    "local,id=fs1,path=/share/1,security_model=none,readonly=on");
                for (size_t i = 0; jargv[i]; i++)
                        assert_null(strstr(jargv[i], "/srv/"));
        }
        {
                /* QEMU as root of the pod's user namespace (the sandbox
                 * kind's 9p): the guest's owners kept, the share's several
                 * filesystems told apart. */
                struct vmm_vm_config ns = cfg;
                struct vmm_qemu_runtime jailed = rt;
                _cleanup_strv_ char **nargv = NULL;
                ns.qemu_userns = true;
                ns.qemu_userns_fd = 9;
                jailed.private_root = true;
                assert_int_equal(vmm_qemu_argv(&ns, &jailed, &nargv, NULL), 0);
                assert_string_equal(opt_value(nargv, "-fsdev", "local,id=fs0"),
                                    "local,id=fs0,path=/share/0,security_model=passthrough,"
                                    "multidevs=remap");
                assert_string_equal(opt_value(nargv, "-fsdev", "local,id=fs1"),
                                    "local,id=fs1,path=/share/1,security_model=passthrough,"
                                    "multidevs=remap,readonly=on");
                /* The 9p server's limits stay: the same -sandbox. */
                assert_string_equal(
                        opt_value(nargv, "-sandbox", ""),
                        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        }
}

/* What QEMU keeps in the pod's user namespace: the 9p server's four, and
 * only with 9p shares and the namespace. */
static void qemu_capabilities(void **state)
{
        (void)state;
        struct vmm_share share = {.tag = "unishim", .host_dir = "/run/p/shared"};
        struct vmm_vm_config cfg = base_config();
        cfg.share_type = VMM_SHARE_9P;
        cfg.shares = &share;
        cfg.n_shares = 1;
        assert_int_equal(vmm_qemu_capabilities(&cfg), 0); /* no namespace: none */
        cfg.qemu_userns = true;
        cfg.qemu_userns_fd = 9;
        uint64_t want = (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_FOWNER) |
                        (1ull << CAP_FSETID);
        assert_int_equal(vmm_qemu_capabilities(&cfg), want);
        /* Nothing that reaches beyond the files: no admin, no setuid, no
         * device nodes, no kill, no ptrace, no raw network. */
        static const int never[] = {CAP_SYS_ADMIN, CAP_SETUID,     CAP_SETGID,
                                    CAP_MKNOD,     CAP_KILL,       CAP_SYS_PTRACE,
                                    CAP_NET_ADMIN, CAP_NET_RAW,    CAP_SETPCAP,
                                    CAP_SETFCAP,   CAP_SYS_CHROOT, CAP_DAC_READ_SEARCH};
        for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
                assert_false(vmm_qemu_capabilities(&cfg) & (1ull << never[i]));
        struct vmm_vm_config vfs = cfg;
        vfs.share_type = VMM_SHARE_VIRTIOFS; /* virtiofsd serves those */
        assert_int_equal(vmm_qemu_capabilities(&vfs), 0);
        struct vmm_vm_config none = cfg;
        none.n_shares = 0;
        assert_int_equal(vmm_qemu_capabilities(&none), 0);
}

static void rejects_bad_config(void **state)
{
        (void)state;
        struct vmm_qemu_runtime rt = {.accel = VMM_ACCEL_TCG,
                                      .qmp_fd = 3,
                                      .agent_fd = 4,
                                      .events_fd = 5,
                                      .console_fd = 6};
        struct vmm_share bad_tag = {.tag = "a,b", .host_dir = "/x"};
        struct vmm_share long_tag = {.tag = "0123456789012345678901234567890123456789",
                                     .host_dir = "/x"};
        struct vmm_share rel = {.tag = "ok", .host_dir = "relative"};
        struct vmm_share dup[] = {{.tag = "t", .host_dir = "/a"}, {.tag = "t", .host_dir = "/b"}};

        struct vmm_vm_config c;
        char **argv = NULL;
        int r;
#define EXPECT_EINVAL(setup)                                                                       \
        do {                                                                                       \
                struct us_error *e = NULL;                                                         \
                c = base_config();                                                                 \
                setup;                                                                             \
                r = vmm_qemu_argv(&c, &rt, &argv, &e);                                             \
                if (r != -EINVAL)                                                                  \
                        fail_msg("accepted: %s", #setup);                                          \
                assert_null(argv);                                                                 \
                assert_non_null(e);                                                                \
                us_error_free(e);                                                                  \
        } while (0)

        EXPECT_EINVAL(c.kernel = NULL);
        EXPECT_EINVAL(c.kernel = "vmlinux");
        EXPECT_EINVAL(c.initrd = "rel/initrd");
        EXPECT_EINVAL(c.kernel = "/k\nx");
        EXPECT_EINVAL(c.vcpus = 1000);
        EXPECT_EINVAL(c.memory_mib = 8);
        EXPECT_EINVAL(c.tcg_tb_size_mib = 100000);
        EXPECT_EINVAL((c.shares = &bad_tag, c.n_shares = 1, c.share_type = VMM_SHARE_9P));
        EXPECT_EINVAL((c.shares = &long_tag, c.n_shares = 1, c.share_type = VMM_SHARE_9P));
        EXPECT_EINVAL((c.shares = &rel, c.n_shares = 1, c.share_type = VMM_SHARE_9P));
        EXPECT_EINVAL((c.shares = dup, c.n_shares = 2, c.share_type = VMM_SHARE_9P));
        EXPECT_EINVAL((c.shares = NULL, c.n_shares = 1));
        EXPECT_EINVAL(c.mac = "02:00:0a:00:00");
        EXPECT_EINVAL(c.mac = "02:00:0a:00:00:0g");
        EXPECT_EINVAL(c.mac = "02:00:0a:00:00:02,script=/x");
        EXPECT_EINVAL(c.cmdline_extra = "a\nb");
        EXPECT_EINVAL(c.id = "x\ty");
        /* A port name is an option value of -device: no comma, no missing one. */
        EXPECT_EINVAL(c.serial_ports[0] = NULL);
        EXPECT_EINVAL(c.serial_ports[1] = "a,chardev=qmp");
        EXPECT_EINVAL(c.serial_ports[0] = "");
        /* virtio-fs shares without virtiofsd connections. */
        EXPECT_EINVAL((c.shares = &rel, rel.host_dir = "/ok", c.n_shares = 1));
        rel.host_dir = "relative";

        /* No console pipe, or one QEMU's -add-fd refuses (stdio). */
        struct vmm_qemu_runtime no_console = rt;
        no_console.console_fd = -1;
        c = base_config();
        assert_int_equal(vmm_qemu_argv(&c, &no_console, &argv, NULL), -EINVAL);
        no_console.console_fd = 2;
        assert_int_equal(vmm_qemu_argv(&c, &no_console, &argv, NULL), -EINVAL);
        assert_null(argv);

        /* Accelerator not decided. */
        struct vmm_qemu_runtime auto_rt = rt;
        auto_rt.accel = VMM_ACCEL_AUTO;
        c = base_config();
        assert_int_equal(vmm_qemu_argv(&c, &auto_rt, &argv, NULL), -EINVAL);

        struct vmm_share comma = {.tag = "t", .host_dir = "/a,b"};
        assert_int_equal(vmm_virtiofsd_argv(&c, &comma, 3, &argv, NULL), -EINVAL);
        assert_int_equal(vmm_virtiofsd_argv(&c, &bad_tag, 3, &argv, NULL), -EINVAL);
        assert_null(argv);
}

/* --- accelerator -------------------------------------------------------- */

static const char cpuinfo_vmx[] =
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2596.146\n"
        "flags\t\t: fpu vme de pse tsc msr vmx ssse3\nvmx flags\t: vnmi\n\n";
static const char cpuinfo_svm[] = "processor\t: 0\nflags\t\t: fpu svm\n";
/* PVM host: /dev/kvm exists but no vmx/svm; "vmx flags" alone must not count. */
static const char cpuinfo_pvm[] =
        "processor\t: 0\ncpu MHz\t\t: 2596.146\nflags\t\t: fpu vme vmxx svmx hypervisor\n"
        "vmx flags\t: vmx ept\n";

static void cpuinfo_parsing(void **state)
{
        (void)state;
        assert_true(vmm_accel_cpuinfo_has_virt(cpuinfo_vmx, strlen(cpuinfo_vmx)));
        assert_true(vmm_accel_cpuinfo_has_virt(cpuinfo_svm, strlen(cpuinfo_svm)));
        assert_false(vmm_accel_cpuinfo_has_virt(cpuinfo_pvm, strlen(cpuinfo_pvm)));
        assert_false(vmm_accel_cpuinfo_has_virt("", 0));
        assert_false(vmm_accel_cpuinfo_has_virt("flags: vm", 9));
        /* Truncated inside the word. */
        assert_false(vmm_accel_cpuinfo_has_virt("flags : vm", 10));
        assert_true(vmm_accel_cpuinfo_has_virt("flags : vmx", 11));

        assert_int_equal(vmm_host_tsc_khz(cpuinfo_vmx, strlen(cpuinfo_vmx)), 2596146);
        assert_int_equal(vmm_host_tsc_khz("cpu MHz : 3000\n", 15), 3000000);
        assert_int_equal(vmm_host_tsc_khz("cpu MHz : 99999999999999\n", 25), 0);
        assert_int_equal(vmm_host_tsc_khz("cpu MHz : 12\n", 13), 0);
        assert_int_equal(vmm_host_tsc_khz("cpu MHz\n", 8), 0);
        assert_int_equal(vmm_host_tsc_khz("", 0), 0);
}

static char *write_tmp(const char *content)
{
        char *path = strdup("/tmp/test-vmm-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
        return path;
}

static void accel_decision(void **state)
{
        (void)state;
        _cleanup_free_ char *vmx = write_tmp(cpuinfo_vmx);
        _cleanup_free_ char *pvm = write_tmp(cpuinfo_pvm);
        _cleanup_free_ char *kvm = write_tmp(""); /* opens O_RDWR like /dev/kvm would */
        enum vmm_accel a = VMM_ACCEL_AUTO;
        char *reason = NULL;
        struct us_error *err = NULL;

        /* vmx + openable device: KVM. */
        assert_int_equal(vmm_accel_decide(VMM_ACCEL_AUTO, vmx, kvm, &a, &reason, NULL), 0);
        assert_int_equal(a, VMM_ACCEL_KVM);
        free(reason);
        assert_int_equal(vmm_accel_decide(VMM_ACCEL_KVM, vmx, kvm, &a, &reason, NULL), 0);
        assert_int_equal(a, VMM_ACCEL_KVM);
        free(reason);

        /* PVM: /dev/kvm opens but no vmx/svm: auto falls back with a reason. */
        assert_int_equal(vmm_accel_decide(VMM_ACCEL_AUTO, pvm, kvm, &a, &reason, NULL), 0);
        assert_int_equal(a, VMM_ACCEL_TCG);
        assert_non_null(strstr(reason, "vmx/svm"));
        free(reason);
        reason = NULL;
        assert_int_equal(vmm_accel_decide(VMM_ACCEL_KVM, pvm, kvm, &a, &reason, &err), -ENODEV);
        assert_null(reason);
        err = us_error_free(err);

        /* vmx but no device. */
        assert_int_equal(
                vmm_accel_decide(VMM_ACCEL_AUTO, vmx, "/nonexistent/kvm", &a, &reason, NULL), 0);
        assert_int_equal(a, VMM_ACCEL_TCG);
        assert_non_null(strstr(reason, "No such file"));
        free(reason);
        assert_int_equal(
                vmm_accel_decide(VMM_ACCEL_KVM, vmx, "/nonexistent/kvm", &a, &reason, &err),
                -ENOENT);
        err = us_error_free(err);

        /* TCG asked for: no probing at all. */
        assert_int_equal(
                vmm_accel_decide(VMM_ACCEL_TCG, "/nonexistent", "/nonexistent", &a, &reason, NULL),
                0);
        assert_int_equal(a, VMM_ACCEL_TCG);
        free(reason);

        /* Unreadable cpuinfo is an error, not a silent TCG. */
        assert_true(vmm_accel_decide(VMM_ACCEL_AUTO, "/nonexistent", kvm, &a, &reason, &err) < 0);
        err = us_error_free(err);
        assert_int_equal(vmm_accel_decide((enum vmm_accel)42, vmx, kvm, &a, &reason, NULL),
                         -EINVAL);

        unlink(vmx);
        unlink(pvm);
        unlink(kvm);
        assert_string_equal(vmm_accel_name(VMM_ACCEL_TCG), "tcg");
}

/* --- vmm_vm_start failure contract, without QEMU -------------------------- */

static size_t count_sockets(const char *dir)
{
        size_t n = 0;
        DIR *d = opendir(dir);
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_type == DT_SOCK)
                        n++;
        closedir(d);
        return n;
}

static void start_failure_leaves_nothing(void **state)
{
        (void)state;
        char dir[] = "/tmp/test-vmm-start-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char helper[128], share_dir[128];
        snprintf(helper, sizeof(helper), "%s/fake-virtiofsd", dir);
        snprintf(share_dir, sizeof(share_dir), "%s/share", dir);
        assert_int_equal(mkdir(share_dir, 0700), 0);
        /* A helper that stays alive until killed. */
        FILE *f = fopen(helper, "w");
        assert_non_null(f);
        fputs("#!/bin/sh\nexec sleep 600\n", f);
        fclose(f);
        assert_int_equal(chmod(helper, 0700), 0);
        /* A "QEMU" that says something on its stderr and on the console fd
         * (-add-fd fd=N,set=1), then exits 1. */
        char fake_qemu[128];
        snprintf(fake_qemu, sizeof(fake_qemu), "%s/fake-qemu", dir);
        f = fopen(fake_qemu, "w");
        assert_non_null(f);
        fputs("#!/bin/sh\n"
              "while [ $# -gt 0 ]; do\n"
              "  if [ \"$1\" = -add-fd ]; then fd=${2#fd=}; fd=${fd%%,*}; fi; shift\n"
              "done\n"
              "echo early console line >/proc/self/fd/$fd\n"
              "echo 'fake-qemu: could not open kernel file' >&2\n"
              "exit 1\n",
              f);
        fclose(f);
        assert_int_equal(chmod(fake_qemu, 0700), 0);
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);

        struct vmm_share share = {.tag = "rootfs", .host_dir = share_dir};
        struct vmm_vm_config cfg = {
                .id = "t",
                .state_dir = dir,
                .kernel = "/nonexistent/vmlinux",
                .accel = VMM_ACCEL_TCG,
                .serial_ports = {"unishim.agent", "unishim.events"},
                .tap_fd = -1,
                .shares = &share,
                .n_shares = 1,
                .virtiofsd_binary = helper,
                .loop = loop,
        };
        struct vmm_vm *vm = NULL;
        struct us_error *err = NULL;

        /* Without a loop nobody would drain the console: refused up front. */
        cfg.loop = NULL;
        assert_int_equal(vmm_vm_start(&cfg, &vm, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "event loop"));
        err = us_error_free(err);
        cfg.loop = loop;
        cfg.console_log_max = 100;
        assert_int_equal(vmm_vm_start(&cfg, &vm, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "console_log_max 100"));
        err = us_error_free(err);
        cfg.console_log_max = 0;
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

        /* Its stderr reaches the error (the qemu.log pipe is drained before
         * the tail is read), its console output console.log. */
        cfg.qemu_binary = fake_qemu;
        assert_true(vmm_vm_start(&cfg, &vm, &err) < 0);
        assert_null(vm);
        if (!strstr(us_error_text(err), "qemu exited with status 1: fake-qemu: could not open"))
                fail_msg("error: %s", us_error_text(err));
        assert_non_null(strstr(us_error_text(err),
                               "qemu exited with status 1: fake-qemu: could not open kernel file"));
        err = us_error_free(err);
        {
                char path[256], buf[128] = "";
                struct stat st;
                snprintf(path, sizeof(path), "%s/console.log", dir);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(fstat(fd, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0600);
                assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
                close(fd);
                assert_string_equal(buf, "early console line\n");
        }
        assert_int_equal(count_sockets(dir), 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

        /* "QEMU" exits at once: its sockets close, QMP sees EOF. */
        cfg.qemu_binary = "/bin/false";
        assert_true(vmm_vm_start(&cfg, &vm, &err) < 0);
        assert_null(vm);
        assert_non_null(strstr(us_error_text(err), "qemu exited with status 1"));
        err = us_error_free(err);
        assert_int_equal(count_sockets(dir), 0);
        /* Every child (QEMU and the still-running helper) killed and reaped. */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);

        /* The binary does not exist: exec error, helper cleaned up. */
        cfg.qemu_binary = "/nonexistent/qemu";
        assert_int_equal(vmm_vm_start(&cfg, &vm, &err), -ENOENT);
        assert_non_null(strstr(us_error_text(err), "exec /nonexistent/qemu"));
        err = us_error_free(err);
        assert_int_equal(count_sockets(dir), 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

        /* A private root holds /usr only: a QEMU elsewhere is refused with
         * its name. */
        cfg.private_root = true;
        cfg.qemu_binary = fake_qemu;
        assert_int_equal(vmm_vm_start(&cfg, &vm, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "is outside /usr"));
        assert_non_null(strstr(us_error_text(err), "fake-qemu"));
        err = us_error_free(err);
        cfg.qemu_binary = NULL;
        cfg.private_root = false;
        assert_int_equal(count_sockets(dir), 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

        /* Invalid config: nothing is started at all. */
        cfg.qemu_binary = "/bin/false";
        cfg.mac = "bad";
        assert_int_equal(vmm_vm_start(&cfg, &vm, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

        us_loop_free(loop);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

/* The template and clone layouts: the same devices in the same order (a
 * clone loads the template's device state), RAM in the given fd, shared in
 * the template and private in a clone, the cold boot's balloon, a
 * virtio-rng, init_on_free=0 on the kernel's command line; a clone
 * waits for its state (-incoming defer) and for cont (-S). */
static void template_layouts(void **state)
{
        (void)state;
        struct vmm_vm_config cfg = base_config();
        struct vmm_qemu_runtime rt = tcg_runtime();
        _cleanup_strv_ char **cold = NULL, **src = NULL, **clone = NULL;
        struct us_error *err = NULL;

        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &cold, &err), 0);
        cfg.template_role = VMM_TEMPLATE_SOURCE;
        cfg.memory_fd = 9;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &src, &err), 0);
        cfg.template_role = VMM_TEMPLATE_CLONE;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &clone, &err), 0);

        assert_null(opt_value(cold, "-device", "virtio-rng"));
        assert_null(strstr(opt_value(cold, "-append", ""), "init_on_free"));
        assert_int_equal(find_arg(cold, "-incoming"), -1);
        for (int k = 0; k < 2; k++) {
                char **v = k ? clone : src;
                assert_string_equal(opt_value(v, "-M", "microvm"),
                                    "microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on,"
                                    "memory-backend=mem");
                assert_string_equal(opt_value(v, "-device", "virtio-balloon"),
                                    opt_value(cold, "-device", "virtio-balloon"));
                assert_string_equal(opt_value(v, "-device", "virtio-rng"), "virtio-rng-device");
                const char *app = opt_value(v, "-append", "");
                assert_string_equal(app + strlen(app) - strlen(" init_on_free=0"),
                                    " init_on_free=0");
                assert_string_equal(opt_value(v, "-m", ""), "256M");
        }
        assert_string_equal(
                opt_value(src, "-object", ""),
                "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/9,share=on");
        assert_string_equal(
                opt_value(clone, "-object", ""),
                "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/9,share=off");
        assert_int_equal(find_arg(src, "-incoming"), -1);
        assert_int_equal(find_arg(src, "-S"), -1);
        assert_string_equal(opt_value(clone, "-incoming", ""), "defer");
        assert_true(find_arg(clone, "-S") > 0);

        /* Apart from the RAM's sharing and the clone's two switches, the
         * command lines are the same. */
        size_t i = 0, j = 0;
        for (; src[i]; i++, j++) {
                if (strncmp(src[i], "memory-backend-file", 19) == 0)
                        continue;
                assert_string_equal(src[i], clone[j]);
        }
        assert_string_equal(clone[j], "-incoming");
        assert_string_equal(clone[j + 1], "defer");
        assert_string_equal(clone[j + 2], "-S");
        assert_null(clone[j + 3]);

        /* 9p is QEMU's own device and migrates unmounted: allowed. */
        struct vmm_share share = {.tag = "pod", .host_dir = "/srv/pod"};
        _cleanup_strv_ char **ninep = NULL;
        cfg.share_type = VMM_SHARE_9P;
        cfg.shares = &share;
        cfg.n_shares = 1;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &ninep, &err), 0);
        assert_non_null(opt_value(ninep, "-device", "virtio-9p-device"));

        /* Refused: virtio-fs (unmigratable), no RAM fd, an unknown role, a
         * private root (no /proc/self/fd in it). */
        char **bad = NULL;
        int fs_fds[] = {11};
        struct vmm_qemu_runtime rt_fs = rt;
        rt_fs.fs_fds = fs_fds;
        cfg.share_type = VMM_SHARE_VIRTIOFS;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt_fs, &bad, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "virtio-fs"));
        err = us_error_free(err);
        cfg.n_shares = 0;
        cfg.memory_fd = 2;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &bad, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "memory fd"));
        err = us_error_free(err);
        cfg.memory_fd = 9;
        cfg.template_role = (enum vmm_template_role)7;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &bad, &err), -EINVAL);
        err = us_error_free(err);
        cfg.template_role = VMM_TEMPLATE_SOURCE;
        cfg.private_root = true;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt, &bad, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "private root"));
        err = us_error_free(err);
        assert_null(bad);

        /* In a private root with a 9p share, which gives it a /proc for
         * the RAM's /proc/self/fd path: allowed, the share at /share/0. */
        _cleanup_strv_ char **jailed = NULL;
        struct vmm_qemu_runtime rt_jail = rt;
        rt_jail.private_root = true;
        cfg.share_type = VMM_SHARE_9P;
        cfg.n_shares = 1;
        assert_int_equal(vmm_qemu_argv(&cfg, &rt_jail, &jailed, &err), 0);
        assert_non_null(opt_value(jailed, "-fsdev", "local,id=fs0,path=/share/0,"));
        assert_string_equal(
                opt_value(jailed, "-object", ""),
                "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/9,share=on");
}

static void never_called(struct vmm_vm *vm, int r, const struct us_error *err, void *userdata)
{
        (void)vm;
        (void)r;
        (void)err;
        (void)userdata;
        fail_msg("a refused save or restore reported an end");
}

/* Save and restore without a VM, a state fd or a callback: refused. */
static void template_calls_refused(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        assert_int_equal(vmm_vm_template_save(NULL, 3, never_called, NULL, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "template save"));
        err = us_error_free(err);
        assert_int_equal(vmm_vm_template_restore(NULL, 3, never_called, NULL, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "template restore"));
        err = us_error_free(err);
}

/* vmm_qemu_clone_filter in a child, as QEMU runs under it: QEMU's
 * discard of a clone's RAM (fallocate PUNCH_HOLE | KEEP_SIZE on the sealed
 * template file, then MADV_DONTNEED) succeeds and the range reads the
 * template's bytes again; the template keeps them; every other fallocate
 * reaches the kernel. */
static void clone_filter_discard(void **state)
{
        (void)state;
        const size_t len = 2 * 4096;
        int fd = memfd_create("template", MFD_ALLOW_SEALING | MFD_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)len), 0);
        char *shared = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_true(shared != MAP_FAILED);
        memset(shared, 'T', len);
        assert_int_equal(munmap(shared, len), 0);
        assert_int_equal(
                fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
                0);
        /* Without the filter the seal refuses the hole. */
        assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
        assert_int_equal(errno, EPERM);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char *ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
                if (ram == MAP_FAILED)
                        _exit(10);
                memset(ram, 'C', len); /* the clone's own copies */
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, vmm_qemu_clone_filter(), 0, 0) < 0)
                        _exit(11);
                if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0)
                        _exit(12);
                if (madvise(ram, 4096, MADV_DONTNEED) != 0)
                        _exit(13);
                if (ram[0] != 'T' || ram[4095] != 'T' || ram[4096] != 'C')
                        _exit(14);
                /* Other modes and calls are the kernel's. */
                if (fallocate(-1, 0, 0, 4096) != -1 || errno != EBADF)
                        _exit(15);
                if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE,
                              0, 4096) != -1)
                        _exit(16);
                _exit(0);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        char c;
        assert_int_equal(pread(fd, &c, 1, 0), 1);
        assert_int_equal(c, 'T');
        close(fd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(tcg_defaults),
                cmocka_unit_test(kvm_virtiofs_net),
                cmocka_unit_test(ninep),
                cmocka_unit_test(qemu_capabilities),
                cmocka_unit_test(template_layouts),
                cmocka_unit_test(template_calls_refused),
                cmocka_unit_test(rejects_bad_config),
                cmocka_unit_test(cpuinfo_parsing),
                cmocka_unit_test(accel_decision),
                cmocka_unit_test(start_failure_leaves_nothing),
                cmocka_unit_test(clone_filter_discard),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
