/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A container process's stdio, between containerd's FIFOs and the process.
 *
 * Without a terminal, stdout/stderr FIFOs are handed to the process directly
 * (zero copies, nothing buffered in the shim); stdin goes through a pipe so
 * that CloseIO can give the process EOF. With a terminal, the shim pumps
 * bytes between the FIFOs and the pty master in its event loop, never
 * blocking on a slow reader.
 *
 * containerd opens its end of an output FIFO in the background, and may do
 * so after the process has exited. When its reader is not there yet as the
 * FIFO is opened, the process writes into a pipe the shim pumps into the
 * FIFO, and the shim keeps the FIFO open until containerd's reader has
 * opened it: that reader gets the output, then EOF, whenever it comes.
 */

#include <stdbool.h>

#include "engine/engine.h"
#include "base/error.h"
#include "base/loop.h"

struct shim_stdio;

/* Opens the FIFOs (empty paths mean none) and fills *ret_fds with what the
 * process gets (still owned by the stdio; -1 = /dev/null). With
 * stdin_at_start, the stdin FIFO waits for shim_stdio_open_stdin. */
int shim_stdio_open(struct us_loop *loop, const char *in, const char *out, const char *err_path,
                    bool terminal, bool stdin_at_start, struct shim_stdio **ret,
                    struct us_stdio *ret_fds, struct us_error **err);

/* Opens the stdin FIFO that shim_stdio_open left for later, and sets
 * fds->in; nothing to do without one. An exec's is opened at its Start, as
 * runc's shim does: until then the client's writer cannot open the FIFO, so
 * it cannot finish its input and send CloseIO before it knows the process
 * (ctr sends none for an EOF it reads before its Exec call returned). */
int shim_stdio_open_stdin(struct shim_stdio *s, struct us_stdio *fds, struct us_error **err);

/* After the process exists: drops the shim's copies of what the process
 * now holds, and with a terminal starts pumping through pty_master (owned
 * by the stdio from then on). */
int shim_stdio_attach(struct shim_stdio *s, int pty_master, struct us_error **err);

/* CloseIO: the process sees EOF on stdin once every byte written to the
 * FIFO has reached it and containerd's writer is closed; never waits. */
void shim_stdio_close_stdin(struct shim_stdio *s);

int shim_stdio_resize(struct shim_stdio *s, unsigned width, unsigned height, struct us_error **err);

/* The process exited: copy what is left in the pty (or pipes) to the FIFOs,
 * non-blocking. */
void shim_stdio_drain(struct shim_stdio *s);

struct shim_stdio *shim_stdio_free(struct shim_stdio *s);
