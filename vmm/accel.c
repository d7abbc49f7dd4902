/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "qemu.h"

/* /proc/cpuinfo is a few KiB per CPU; bound what we read. */
#define CPUINFO_MAX (4 * 1024 * 1024)

const char *vmm_accel_name(enum vmm_accel a)
{
        switch (a) {
        case VMM_ACCEL_AUTO:
                return "auto";
        case VMM_ACCEL_KVM:
                return "kvm";
        case VMM_ACCEL_TCG:
                return "tcg";
        }
        return "?";
}

static bool is_word_char(char c)
{
        return c != ' ' && c != '\t' && c != '\n';
}

bool vmm_accel_cpuinfo_has_virt(const char *cpuinfo, size_t len)
{
        size_t i = 0;

        while (i < len) {
                size_t eol = i;
                while (eol < len && cpuinfo[eol] != '\n')
                        eol++;
                /* Only the "flags" line counts ("vmx flags" on newer kernels
                 * lists vmx features, not the vmx flag itself). */
                if (eol - i > 5 && strncmp(cpuinfo + i, "flags", 5) == 0 &&
                    (cpuinfo[i + 5] == ' ' || cpuinfo[i + 5] == '\t' || cpuinfo[i + 5] == ':')) {
                        const char *colon = memchr(cpuinfo + i, ':', eol - i);
                        if (colon) {
                                size_t j = (size_t)(colon - cpuinfo) + 1;
                                while (j < eol) {
                                        while (j < eol && !is_word_char(cpuinfo[j]))
                                                j++;
                                        size_t w = j;
                                        while (j < eol && is_word_char(cpuinfo[j]))
                                                j++;
                                        if (j - w == 3 && (strncmp(cpuinfo + w, "vmx", 3) == 0 ||
                                                           strncmp(cpuinfo + w, "svm", 3) == 0))
                                                return true;
                                }
                        }
                }
                i = eol + 1;
        }
        return false;
}

unsigned vmm_host_tsc_khz(const char *cpuinfo, size_t len)
{
        size_t i = 0;

        while (i < len) {
                size_t eol = i;
                while (eol < len && cpuinfo[eol] != '\n')
                        eol++;
                if (eol - i > 7 && strncmp(cpuinfo + i, "cpu MHz", 7) == 0) {
                        const char *colon = memchr(cpuinfo + i, ':', eol - i);
                        unsigned long mhz = 0, frac = 0, scale = 1000;
                        size_t j;
                        if (!colon)
                                return 0;
                        j = (size_t)(colon - cpuinfo) + 1;
                        while (j < eol && cpuinfo[j] == ' ')
                                j++;
                        for (; j < eol && cpuinfo[j] >= '0' && cpuinfo[j] <= '9'; j++) {
                                mhz = mhz * 10 + (unsigned long)(cpuinfo[j] - '0');
                                if (mhz > 100000)
                                        return 0;
                        }
                        if (j < eol && cpuinfo[j] == '.')
                                for (j++;
                                     j < eol && scale > 1 && cpuinfo[j] >= '0' && cpuinfo[j] <= '9';
                                     j++) {
                                        scale /= 10;
                                        frac += (unsigned long)(cpuinfo[j] - '0') * scale;
                                }
                        /* 100 MHz .. 100 GHz */
                        if (mhz < 100)
                                return 0;
                        return (unsigned)(mhz * 1000 + frac);
                }
                i = eol + 1;
        }
        return 0;
}

int vmm_read_bounded(const char *path, char **ret, size_t *ret_len, struct us_error **err)
{
        /* O_NONBLOCK: a fifo in a file's place fails its read instead of
         * blocking the open until a writer comes. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        if (fd < 0)
                return us_errorf(err, errno, "open %s", path);
        for (;;) {
                if (len == cap) {
                        if (cap >= CPUINFO_MAX)
                                return us_error_msg(err, E2BIG, "%s larger than %d bytes", path,
                                                    CPUINFO_MAX);
                        cap = cap ? cap * 2 : 16384;
                        char *n = realloc(buf, cap);
                        if (!n)
                                return us_errorf(err, ENOMEM, "read %s", path);
                        buf = n;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return us_errorf(err, errno, "read %s", path);
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int vmm_accel_decide(enum vmm_accel want, const char *cpuinfo_path, const char *kvm_path,
                     enum vmm_accel *ret, char **ret_reason, struct us_error **err)
{
        _cleanup_free_ char *cpuinfo = NULL;
        _cleanup_free_ char *reason = NULL;
        enum vmm_accel decided;
        size_t len = 0;
        int r;

        if (!cpuinfo_path)
                cpuinfo_path = "/proc/cpuinfo";
        if (!kvm_path)
                kvm_path = "/dev/kvm";

        if (want == VMM_ACCEL_TCG) {
                reason = strdup("tcg requested");
                decided = VMM_ACCEL_TCG;
        } else if (want == VMM_ACCEL_KVM || want == VMM_ACCEL_AUTO) {
                bool virt = false;
                const char *why = NULL;
                int kvm_errno = 0;

                r = vmm_read_bounded(cpuinfo_path, &cpuinfo, &len, err);
                if (r < 0)
                        return us_error_wrap(err, r, "decide accelerator");
                virt = vmm_accel_cpuinfo_has_virt(cpuinfo, len);
                if (!virt)
                        /* Paravirtual KVM (PVM) offers /dev/kvm without vmx/svm;
                         * stock guest kernels do not boot on it. */
                        why = "the CPU has no vmx/svm flag";
                else {
                        int fd = open(kvm_path, O_RDWR | O_CLOEXEC);
                        if (fd < 0) {
                                kvm_errno = errno;
                                why = "cannot open the KVM device";
                        } else
                                close(fd);
                }
                if (!why) {
                        decided = VMM_ACCEL_KVM;
                        if (asprintf(&reason, "kvm: CPU has vmx/svm and %s opens", kvm_path) < 0)
                                reason = NULL;
                } else if (want == VMM_ACCEL_KVM) {
                        if (kvm_errno)
                                return us_errorf(err, kvm_errno, "kvm requested but %s (%s)", why,
                                                 kvm_path);
                        return us_error_msg(err, ENODEV, "kvm requested but %s", why);
                } else {
                        decided = VMM_ACCEL_TCG;
                        if (asprintf(&reason,
                                     "falling back to TCG software emulation (slow): %s%s%s%s", why,
                                     kvm_errno ? " (" : "", kvm_errno ? strerror(kvm_errno) : "",
                                     kvm_errno ? ")" : "") < 0)
                                reason = NULL;
                }
        } else
                return us_error_msg(err, EINVAL, "unknown accelerator %d", (int)want);

        if (!reason)
                return us_errorf(err, ENOMEM, "decide accelerator");
        *ret = decided;
        *ret_reason = TAKE_PTR(reason);
        return 0;
}

unsigned vmm_host_tsc_khz_read(void)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        if (vmm_read_bounded("/proc/cpuinfo", &buf, &len, NULL) < 0)
                return 0;
        return vmm_host_tsc_khz(buf, len);
}
