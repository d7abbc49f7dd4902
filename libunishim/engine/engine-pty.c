/* SPDX-License-Identifier: Apache-2.0 */
/* Terminal mode: a pty from the container's own devpts instance. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "base/cleanup.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

int engine_pty_setup(int sync_fd, const struct us_oci_process *p, struct us_error **err)
{
        _cleanup_close_ int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return us_errorf(err, errno, "open /dev/pts/ptmx");
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
                return us_errorf(err, errno, "unlockpt");
        /* TIOCGPTPEER opens the slave through the master, so no path lookup
         * in a devpts that the container could have replaced. */
        _cleanup_close_ int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                unsigned int n;
                char path[64];
                if (ioctl(master, TIOCGPTN, &n) < 0)
                        return us_errorf(err, errno, "get pty number");
                snprintf(path, sizeof(path), "/dev/pts/%u", n);
                slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (slave < 0)
                        return us_errorf(err, errno, "open %s", path);
        }
        if (p->has_console_size) {
                struct winsize ws = {.ws_row = (unsigned short)p->console_height,
                                     .ws_col = (unsigned short)p->console_width};
                if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
                        return us_errorf(err, errno, "set console size");
        }
        if (ioctl(slave, TIOCSCTTY, 0) < 0)
                return us_errorf(err, errno, "set controlling terminal");
        for (int i = 0; i < 3; i++)
                if (dup2(slave, i) < 0)
                        return us_errorf(err, errno, "dup2 pty onto fd %d", i);
        int r = engine_send(sync_fd, ENGINE_MSG_PTY, 0, 0, NULL, master);
        if (r < 0)
                return us_errorf(err, -r, "send pty master");
        return 0;
}
