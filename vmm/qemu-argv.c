/* SPDX-License-Identifier: Apache-2.0 */
/* QEMU's and virtiofsd's command lines, as pure functions so they are tested
 * without starting anything. */
#include <errno.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "jail.h"
#include "qemu.h"
#include "syntax.h"

#define DEFAULT_VIRTIOFSD "/usr/lib/qemu/virtiofsd"
#define MAX_TAG           36 /* virtio-fs tag limit; 9p allows more, keep one rule */
#define MAX_VCPUS         64
#define MAX_MEMORY_MIB    (1024u * 1024u)
#define MAX_TB_MIB        2048u
#define MAX_SHARES        8
#define CONSOLE_FDSET     1

struct argv_builder {
        char **v;
        size_t n, cap;
        bool oom;
};

static void add_fmt(struct argv_builder *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void add_fmt(struct argv_builder *b, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;

        if (b->oom)
                return;
        if (b->n + 2 > b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 64;
                char **v = realloc(b->v, cap * sizeof(*v));
                if (!v) {
                        b->oom = true;
                        return;
                }
                b->v = v;
                b->cap = cap;
        }
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s) {
                b->oom = true;
                return;
        }
        b->v[b->n++] = s;
        b->v[b->n] = NULL;
}

static int finish(struct argv_builder *b, char ***ret, struct us_error **err)
{
        if (b->oom || !b->v) {
                us_strv_free(b->v);
                b->v = NULL;
                return us_errorf(err, ENOMEM, "build command line");
        }
        *ret = b->v;
        b->v = NULL;
        return 0;
}

/* QemuOpts values: a comma is written as ",,". Caller frees. */
static char *opt_escape(const char *s)
{
        size_t extra = 0;
        for (const char *c = s; *c; c++)
                extra += *c == ',';
        char *out = malloc(strlen(s) + extra + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *c = s; *c; c++) {
                *o++ = *c;
                if (*c == ',')
                        *o++ = ',';
        }
        *o = '\0';
        return out;
}

static int check_path(const char *what, const char *p, struct us_error **err)
{
        if (!p || p[0] != '/')
                return us_error_msg(err, EINVAL, "%s must be an absolute path", what);
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20)
                        return us_error_msg(err, EINVAL, "%s contains a control character", what);
        return 0;
}

static int check_tag(const char *tag, struct us_error **err)
{
        if (!vmm_word_valid(tag, MAX_TAG))
                return us_error_msg(err, EINVAL, "share tag %s: 1..%d of [A-Za-z0-9._-]",
                                    tag ? tag : "", MAX_TAG);
        return 0;
}

static int check_mac(const char *mac, struct us_error **err)
{
        if (!vmm_mac_valid(mac))
                return us_error_msg(err, EINVAL, "invalid MAC address (want xx:xx:xx:xx:xx:xx)");
        return 0;
}

static int check_config(const struct vmm_vm_config *cfg, struct us_error **err)
{
        int r;

        r = check_path("kernel", cfg->kernel, err);
        if (r < 0)
                return r;
        if (cfg->initrd && (r = check_path("initrd", cfg->initrd, err)) < 0)
                return r;
        if ((r = check_path("state_dir", cfg->state_dir, err)) < 0)
                return r;
        if (cfg->vcpus > MAX_VCPUS)
                return us_error_msg(err, EINVAL, "vcpus %u above %d", cfg->vcpus, MAX_VCPUS);
        if (cfg->memory_mib > MAX_MEMORY_MIB || (cfg->memory_mib && cfg->memory_mib < 32))
                return us_error_msg(err, EINVAL, "memory %u MiB outside 32..%u", cfg->memory_mib,
                                    MAX_MEMORY_MIB);
        if (cfg->tcg_tb_size_mib > MAX_TB_MIB)
                return us_error_msg(err, EINVAL, "tb-size %u MiB above %u", cfg->tcg_tb_size_mib,
                                    MAX_TB_MIB);
        for (size_t i = 0; i < US_ELEMENTSOF(cfg->serial_ports); i++)
                if (!vmm_word_valid(cfg->serial_ports[i], MAX_TAG))
                        return us_error_msg(
                                err, EINVAL, "serial port name %s: 1..%d of [A-Za-z0-9._-]",
                                cfg->serial_ports[i] ? cfg->serial_ports[i] : "", MAX_TAG);
        if (cfg->n_shares > MAX_SHARES || (cfg->n_shares && !cfg->shares))
                return us_error_msg(err, EINVAL, "at most %d shares", MAX_SHARES);
        for (size_t i = 0; i < cfg->n_shares; i++) {
                if ((r = check_tag(cfg->shares[i].tag, err)) < 0)
                        return r;
                if ((r = check_path("share host_dir", cfg->shares[i].host_dir, err)) < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(cfg->shares[i].tag, cfg->shares[j].tag) == 0)
                                return us_error_msg(err, EINVAL, "duplicate share tag %s",
                                                    cfg->shares[i].tag);
        }
        if (cfg->mac && (r = check_mac(cfg->mac, err)) < 0)
                return r;
        if (cfg->id)
                for (const char *c = cfg->id; *c; c++)
                        if ((unsigned char)*c < 0x20)
                                return us_error_msg(err, EINVAL,
                                                    "vm id contains a control character");
        if (cfg->template_role != VMM_TEMPLATE_NONE) {
                if (cfg->template_role != VMM_TEMPLATE_SOURCE &&
                    cfg->template_role != VMM_TEMPLATE_CLONE)
                        return us_error_msg(err, EINVAL, "unknown template role");
                if (cfg->memory_fd <= 2)
                        return us_error_msg(err, EINVAL,
                                            "template memory fd %d: must be above stdio",
                                            cfg->memory_fd);
                if (cfg->share_type == VMM_SHARE_VIRTIOFS && cfg->n_shares > 0)
                        return us_error_msg(err, EINVAL,
                                            "a template or clone cannot have virtio-fs shares "
                                            "(QEMU cannot migrate vhost-user-fs)");
                /* The RAM is mapped through /proc/self/fd: the private
                 * root has a /proc only with 9p shares (vmm/jail.h). */
                if (cfg->private_root && (cfg->share_type != VMM_SHARE_9P || cfg->n_shares == 0))
                        return us_error_msg(err, EINVAL,
                                            "a template or clone in a private root needs a 9p "
                                            "share (its RAM is mapped through /proc/self/fd, "
                                            "which the root has only with 9p)");
        }
        if (cfg->cmdline_extra)
                for (const char *c = cfg->cmdline_extra; *c; c++)
                        if ((unsigned char)*c < 0x20)
                                return us_error_msg(
                                        err, EINVAL,
                                        "kernel command line contains a control character");
        return 0;
}

int vmm_qemu_argv(const struct vmm_vm_config *cfg, const struct vmm_qemu_runtime *rt, char ***ret,
                  struct us_error **err)
{
        struct argv_builder b = {0};
        unsigned mem, vcpus, tb;
        bool virtiofs, templ;
        int r;

        if (!cfg || !rt)
                return us_error_msg(err, EINVAL, "no config");
        mem = cfg->memory_mib ? cfg->memory_mib : 256;
        vcpus = cfg->vcpus ? cfg->vcpus : 1;
        tb = cfg->tcg_tb_size_mib ? cfg->tcg_tb_size_mib : 32;
        virtiofs = cfg->share_type == VMM_SHARE_VIRTIOFS && cfg->n_shares > 0;
        templ = cfg->template_role != VMM_TEMPLATE_NONE;
        r = check_config(cfg, err);
        if (r < 0)
                return r;
        if (rt->accel != VMM_ACCEL_KVM && rt->accel != VMM_ACCEL_TCG)
                return us_error_msg(err, EINVAL, "accelerator must be decided (kvm or tcg)");
        if (rt->qmp_fd < 0 || rt->agent_fd < 0 || rt->events_fd < 0)
                return us_error_msg(err, EINVAL, "QMP/agent sockets are required");
        /* QEMU refuses -add-fd for stdio fds. */
        if (rt->console_fd <= 2)
                return us_error_msg(err, EINVAL, "console pipe fd %d: must be above stdio",
                                    rt->console_fd);
        if (virtiofs && !rt->fs_fds)
                return us_error_msg(err, EINVAL, "virtio-fs shares need their virtiofsd sockets");
        if (cfg->share_type != VMM_SHARE_VIRTIOFS && cfg->share_type != VMM_SHARE_9P)
                return us_error_msg(err, EINVAL, "unknown share type");

        add_fmt(&b, "%s", cfg->qemu_binary ? cfg->qemu_binary : VMM_DEFAULT_QEMU);
        {
                _cleanup_free_ char *name = opt_escape(cfg->id ? cfg->id : "vm");
                if (!name)
                        b.oom = true;
                add_fmt(&b, "-name");
                add_fmt(&b, "unishim-%s,debug-threads=on", name ? name : "");
        }
        /* microvm: no PCI, no firmware, PVH direct kernel boot. rtc=on saves
         * the kernel's 2 s calibration fallback; pit for the timer under TCG. */
        add_fmt(&b, "-M");
        add_fmt(&b, "microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on%s",
                virtiofs || templ ? ",memory-backend=mem" : "");
        if (rt->accel == VMM_ACCEL_KVM) {
                add_fmt(&b, "-accel");
                add_fmt(&b, "kvm");
                add_fmt(&b, "-cpu");
                add_fmt(&b, "host");
        } else {
                /* Bound the translation cache: it is RSS (default 1 GiB). */
                add_fmt(&b, "-accel");
                add_fmt(&b, "tcg,tb-size=%u", tb);
                add_fmt(&b, "-cpu");
                add_fmt(&b, "max");
        }
        add_fmt(&b, "-m");
        add_fmt(&b, "%uM", mem);
        if (virtiofs) {
                /* vhost-user needs guest RAM as a shareable fd. */
                add_fmt(&b, "-object");
                add_fmt(&b, "memory-backend-memfd,id=mem,size=%uM,share=on", mem);
        } else if (templ) {
                /* The template's RAM stays in its file (x-ignore-shared
                 * skips it in the stream); a clone maps the same file
                 * privately, so the pages it does not write are the
                 * template's, shared by every clone. */
                add_fmt(&b, "-object");
                add_fmt(&b,
                        "memory-backend-file,id=mem,size=%uM,mem-path=/proc/self/fd/%d,share=%s",
                        mem, cfg->memory_fd,
                        cfg->template_role == VMM_TEMPLATE_SOURCE ? "on" : "off");
        }
        add_fmt(&b, "-smp");
        add_fmt(&b, "%u", vcpus);
        /* microvm's virtio-mmio defaults to legacy (v1) devices, which
         * vhost-user (virtiofsd) refuses: use modern virtio-mmio. */
        add_fmt(&b, "-global");
        add_fmt(&b, "virtio-mmio.force-legacy=false");
        add_fmt(&b, "-nodefaults");
        add_fmt(&b, "-no-user-config");
        add_fmt(&b, "-nographic");
        add_fmt(&b, "-no-reboot");
        add_fmt(&b, "-sandbox");
        add_fmt(&b, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");

        add_fmt(&b, "-kernel");
        add_fmt(&b, "%s", rt->private_root ? VMM_JAIL_KERNEL : cfg->kernel);
        if (cfg->initrd) {
                add_fmt(&b, "-initrd");
                add_fmt(&b, "%s", rt->private_root ? VMM_JAIL_INITRD : cfg->initrd);
        }
        add_fmt(&b, "-append");
        {
                char tsc[40] = "";
                if (rt->accel == VMM_ACCEL_TCG && rt->tsc_khz > 0)
                        snprintf(tsc, sizeof(tsc), " tsc_early_khz=%u", rt->tsc_khz);
                /* cryptomgr.notests: the kernel's crypto self-tests cost
                 * ~0.5 s of every boot under TCG (docs/guest.md); they test
                 * the guest kernel's own algorithms, which the guest could
                 * replace anyway, and do not guard the host. */
                /* init_on_free=0 (last: the last one counts): with it on,
                 * the guest would take a page it reported free to read
                 * back as zeros, where a clone's reads the template's
                 * (vmm_qemu_clone_filter). Debian's kernels have it off
                 * already; this keeps a config or cmdline_extra from
                 * turning it on. */
                add_fmt(&b,
                        "console=ttyS0 reboot=t panic=-1 pci=off quiet cryptomgr.notests%s%s%s%s",
                        tsc, cfg->cmdline_extra ? " " : "",
                        cfg->cmdline_extra ? cfg->cmdline_extra : "",
                        templ ? " init_on_free=0" : "");
        }

        /* The console goes into a pipe that the host drains into a capped
         * log (vmm/logpipe.h), never into a file QEMU grows at the guest's
         * will. QEMU 7.2 has no output-only chardev taking an fd, so the
         * pipe's write end goes in as an fd set: the file chardev opens
         * /dev/fdset/N by dup'ing the member whose access mode matches its
         * O_WRONLY. append=on is required: without it the open carries
         * O_TRUNC, the fd-set dup then ftruncate()s the pipe and QEMU fails
         * with "Could not open '/dev/fdset/1': Invalid argument" (measured
         * with Debian's 7.2). QEMU makes the fd non-blocking
         * (qemu_chr_open_fd): with the pipe full, the 16550 retries later
         * and the guest's console slows down; QEMU itself never blocks. */
        add_fmt(&b, "-add-fd");
        add_fmt(&b, "fd=%d,set=%d", rt->console_fd, CONSOLE_FDSET);
        add_fmt(&b, "-chardev");
        add_fmt(&b, "file,id=console,path=/dev/fdset/%d,append=on", CONSOLE_FDSET);
        add_fmt(&b, "-serial");
        add_fmt(&b, "chardev:console");

        /* Sockets we bound and listen on ourselves, passed by fd: connecting
         * to them never races QEMU's startup. */
        add_fmt(&b, "-chardev");
        add_fmt(&b, "socket,id=qmp,fd=%d,server=on,wait=off", rt->qmp_fd);
        add_fmt(&b, "-mon");
        add_fmt(&b, "chardev=qmp,mode=control");

        add_fmt(&b, "-device");
        add_fmt(&b, "virtio-serial-device");
        add_fmt(&b, "-chardev");
        add_fmt(&b, "socket,id=agent,fd=%d,server=on,wait=off", rt->agent_fd);
        add_fmt(&b, "-device");
        add_fmt(&b, "virtserialport,chardev=agent,name=%s", cfg->serial_ports[0]);
        add_fmt(&b, "-chardev");
        add_fmt(&b, "socket,id=events,fd=%d,server=on,wait=off", rt->events_fd);
        add_fmt(&b, "-device");
        add_fmt(&b, "virtserialport,chardev=events,name=%s", cfg->serial_ports[1]);

        /* Free page reporting: the guest tells QEMU which pages it freed
         * (in 2 MiB blocks, after they stayed free for a while) and QEMU
         * discards them, so memory a pod used once goes back to the host.
         * The balloon is never inflated and no statistics are polled: the
         * host asks the guest nothing and waits for nothing, and a guest
         * cannot use it to get memory beyond -m (deflate-on-oom only gives
         * back what an inflation took). */
        add_fmt(&b, "-device");
        add_fmt(&b, "virtio-balloon-device,free-page-reporting=on,deflate-on-oom=off");
        if (templ) {
                /* A clone discards a reported page from its private
                 * mapping only (vmm_qemu_clone_filter): the range reads
                 * the template's page again, not zeros. The RNG lets a
                 * clone's kernel draw fresh host entropy after the
                 * restore. */
                add_fmt(&b, "-device");
                add_fmt(&b, "virtio-rng-device");
        }

        if (cfg->tap_fd >= 0) {
                add_fmt(&b, "-netdev");
                add_fmt(&b, "tap,id=net0,fd=%d", cfg->tap_fd);
                add_fmt(&b, "-device");
                if (cfg->mac)
                        add_fmt(&b, "virtio-net-device,netdev=net0,mac=%s", cfg->mac);
                else
                        add_fmt(&b, "virtio-net-device,netdev=net0");
        }

        for (size_t i = 0; i < cfg->n_shares; i++) {
                const struct vmm_share *s = &cfg->shares[i];
                if (cfg->share_type == VMM_SHARE_VIRTIOFS) {
                        if (rt->fs_fds[i] < 0) {
                                us_strv_free(b.v);
                                return us_error_msg(err, EINVAL,
                                                    "share %s has no virtiofsd connection", s->tag);
                        }
                        /* Connected to virtiofsd by us: QEMU never resolves a path. */
                        add_fmt(&b, "-chardev");
                        add_fmt(&b, "socket,id=fs%zu,fd=%d", i, rt->fs_fds[i]);
                        add_fmt(&b, "-device");
                        add_fmt(&b, "vhost-user-fs-device,chardev=fs%zu,tag=%s", i, s->tag);
                } else {
                        /* In its private root QEMU finds the share where
                         * vmm/jail.h binds it. */
                        char jailed[32];
                        snprintf(jailed, sizeof(jailed), VMM_JAIL_SHARE_FMT, i);
                        _cleanup_free_ char *dir =
                                opt_escape(rt->private_root ? jailed : s->host_dir);
                        if (!dir)
                                b.oom = true;
                        /* passthrough: as root of the pod's user namespace
                         * QEMU gives files the guest's owners and modes
                         * (its chown failing fails the request, where none
                         * would ignore it); remap: the share's mounts are
                         * several filesystems, whose inode numbers would
                         * collide in the guest. Without the namespace QEMU
                         * can change no owner: none. */
                        add_fmt(&b, "-fsdev");
                        add_fmt(&b, "local,id=fs%zu,path=%s,%s%s", i, dir ? dir : "",
                                cfg->qemu_userns ? "security_model=passthrough,multidevs=remap"
                                                 : "security_model=none",
                                s->readonly ? ",readonly=on" : "");
                        add_fmt(&b, "-device");
                        add_fmt(&b, "virtio-9p-device,fsdev=fs%zu,mount_tag=%s", i, s->tag);
                }
        }
        if (cfg->template_role == VMM_TEMPLATE_CLONE) {
                /* The state comes over QMP once x-ignore-shared is set,
                 * which 7.2 has no command-line switch for; -S: the guest
                 * runs when the restore says so, not when the load ends. */
                add_fmt(&b, "-incoming");
                add_fmt(&b, "defer");
                add_fmt(&b, "-S");
        }
        return finish(&b, ret, err);
}

uint64_t vmm_qemu_capabilities(const struct vmm_vm_config *cfg)
{
        if (!cfg->qemu_userns || cfg->share_type != VMM_SHARE_9P || cfg->n_shares == 0)
                return 0;
        /* The 9p server's local backend (QEMU 7.2, passthrough): reads and
         * writes files whatever their modes (DAC_OVERRIDE, which covers
         * search), chowns what it creates to the guest's caller and chowns
         * on request (CHOWN), chmods and utimes files it does not own
         * (FOWNER), and keeps setgid bits for a group it is not in and
         * setuid bits across writes (FSETID). Not MKNOD: a device node
         * needs it in the host's namespace, not the pod's, and the share
         * is nodev anyway; not SETUID/SETGID: the local backend never
         * switches ids (the proxy helper did). */
        return (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_FOWNER) |
               (1ull << CAP_FSETID);
}

int vmm_virtiofsd_argv(const struct vmm_vm_config *cfg, const struct vmm_share *share, int fd,
                       char ***ret, struct us_error **err)
{
        struct argv_builder b = {0};
        _cleanup_free_ char *dir = NULL;
        int r;

        if (!cfg || !share || fd < 0)
                return us_error_msg(err, EINVAL, "virtiofsd: no share or socket");
        if ((r = check_tag(share->tag, err)) < 0 ||
            (r = check_path("share host_dir", share->host_dir, err)) < 0)
                return r;
        /* -o takes a comma-separated list: escape like QemuOpts does not
         * apply here, so refuse commas outright. */
        if (strchr(share->host_dir, ','))
                return us_error_msg(err, EINVAL, "share host_dir %s contains a comma",
                                    share->host_dir);
        dir = strdup(cfg->virtiofsd_userns ? VMM_VIRTIOFSD_SHARE_AT : share->host_dir);
        if (!dir)
                return us_errorf(err, ENOMEM, "virtiofsd argv");

        add_fmt(&b, "%s", cfg->virtiofsd_binary ? cfg->virtiofsd_binary : DEFAULT_VIRTIOFSD);
        add_fmt(&b, "--fd=%d", fd);
        add_fmt(&b, "-o");
        add_fmt(&b, "source=%s", dir);
        /* namespace sandbox: virtiofsd pivots into the shared dir in its own
         * mount/pid/net namespaces (as root, of the host or of its user
         * namespace). */
        add_fmt(&b, "-o");
        add_fmt(&b, "sandbox=namespace");
        add_fmt(&b, "-o");
        add_fmt(&b, "cache=auto");
        add_fmt(&b, "-o");
        add_fmt(&b, "log_level=warn");
        return finish(&b, ret, err);
}
