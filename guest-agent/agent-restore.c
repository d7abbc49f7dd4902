/* SPDX-License-Identifier: Apache-2.0 */
/* The first call after a restore from a VM template (docs/vmm.md, "What a
 * clone must be given after the restore"). Every clone of one template
 * wakes with the template's RNG state: two clones draw the same bytes and
 * would generate the same boot_id until the kernel's periodic reseed. And
 * its wall clock lags by the template's age: under TCG the guest's clocks
 * stood still from the save to the restore. */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"

#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

/* Adds the host's bytes to the input pool, credited (RNDADDENTROPY), then
 * forces the CRNG to reseed from the pool now (RNDRESEEDCRNG: 6.1 reseeds
 * the base CRNG and bumps its generation, so every per-CPU CRNG derives
 * anew) rather than at its next scheduled reseed. */
static int reseed(const uint8_t *bytes, size_t len, struct us_error **err)
{
        _cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open /dev/urandom");
        _cleanup_free_ struct rand_pool_info *info = calloc(1, sizeof(*info) + len);
        if (!info)
                return us_errorf(err, ENOMEM, "reseed");
        info->entropy_count = (int)(len * 8);
        info->buf_size = (int)len;
        memcpy(info->buf, bytes, len);
        if (ioctl(fd, RNDADDENTROPY, info) < 0)
                return us_errorf(err, errno, "RNDADDENTROPY");
        if (ioctl(fd, RNDRESEEDCRNG) < 0)
                return us_errorf(err, errno, "RNDRESEEDCRNG");
        return 0;
}

static int read_boot_id(char *buf, size_t size, struct us_error **err)
{
        _cleanup_close_ int fd = open(BOOT_ID_PATH, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", BOOT_ID_PATH);
        ssize_t n = read(fd, buf, size - 1);
        if (n < 0)
                return us_errorf(err, errno, "read %s", BOOT_ID_PATH);
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

void agent_h_restore(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        (void)ud;
        _cleanup_pb_ Unishim__Agent__V1__RestoreRequest *req =
                agent_call_decode(call, payload, len);
        if (!req)
                return;
        struct us_error *err = NULL;
        char boot_id[64] = "";
        int r = reseed(req->entropy.data, req->entropy.len, &err);
        if (r >= 0 && req->realtime_ns > 0) {
                struct timespec ts = {.tv_sec = (time_t)(req->realtime_ns / 1000000000),
                                      .tv_nsec = (long)(req->realtime_ns % 1000000000)};
                if (clock_settime(CLOCK_REALTIME, &ts) < 0)
                        r = us_errorf(&err, errno, "set the clock");
        }
        /* After the reseed: its first read generates it from the new state. */
        if (r >= 0)
                r = read_boot_id(boot_id, sizeof(boot_id), &err);
        if (r < 0) {
                r = us_error_wrap(&err, r, "restore");
                return us_ttrpc_call_fail_error(call, r, err);
        }
        Unishim__Agent__V1__RestoreResponse resp = UNISHIM__AGENT__V1__RESTORE_RESPONSE__INIT;
        resp.boot_id = boot_id;
        us_ttrpc_call_reply(call, &resp.base);
}
