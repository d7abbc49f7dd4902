/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One error contract for all of unishim: a fallible function returns a
 * negative errno and, where a message helps, fills *err with the context.
 * Context is added on the way up with us_error_wrap(), outermost first in the
 * final text: "create pod abc: start vm: qemu exited 1".
 *
 * err may be NULL (caller wants no message). If *err is already set, a new
 * us_errorf() keeps the first error (the root cause) and only wraps add to it.
 */

#include <stdarg.h>

struct us_error {
        int code;  /* positive errno */
        char *msg; /* owned, never NULL */
};

/* Sets *err (if err and !*err) to the formatted message, with ": strerror"
 * appended when errnum > 0 and with_strerror. Returns -abs(errnum), or -EIO
 * when errnum is 0. */
int us_errorf(struct us_error **err, int errnum, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Like us_errorf without the strerror suffix: for validation errors where the
 * errno adds nothing ("invalid annotation x: ..."). */
int us_error_msg(struct us_error **err, int errnum, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Prefixes "<fmt>: " to *err's message (creates one from strerror(-ret) when
 * *err is unset). Returns ret, so: return us_error_wrap(err, r, "open %s", p); */
int us_error_wrap(struct us_error **err, int ret, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Frees err; accepts NULL; returns NULL. */
struct us_error *us_error_free(struct us_error *err);

/* The message of err, or "unknown error" for NULL. Never NULL. */
const char *us_error_text(const struct us_error *err);
