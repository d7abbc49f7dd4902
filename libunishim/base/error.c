/* SPDX-License-Identifier: Apache-2.0 */
#include "error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int normalize(int errnum)
{
        if (errnum < 0)
                errnum = -errnum;
        return errnum == 0 ? EIO : errnum;
}

__attribute__((format(printf, 4, 0))) static int
set_error(struct us_error **err, int errnum, bool with_strerror, const char *fmt, va_list ap)
{
        errnum = normalize(errnum);
        if (!err || *err)
                return -errnum;

        char *text = NULL;
        if (vasprintf(&text, fmt, ap) < 0)
                text = NULL;

        struct us_error *e = calloc(1, sizeof(*e));
        if (!e) {
                free(text);
                return -errnum;
        }
        e->code = errnum;
        if (text && with_strerror) {
                char *full = NULL;
                if (asprintf(&full, "%s: %s", text, strerror(errnum)) >= 0) {
                        free(text);
                        text = full;
                }
        }
        e->msg = text ? text : strdup(strerror(errnum));
        if (!e->msg) {
                free(e);
                return -errnum;
        }
        *err = e;
        return -errnum;
}

int us_errorf(struct us_error **err, int errnum, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_error(err, errnum, true, fmt, ap);
        va_end(ap);
        return r;
}

int us_error_msg(struct us_error **err, int errnum, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_error(err, errnum, false, fmt, ap);
        va_end(ap);
        return r;
}

int us_error_wrap(struct us_error **err, int ret, const char *fmt, ...)
{
        if (!err)
                return ret;
        if (!*err) {
                int errnum = normalize(ret);
                struct us_error *e = calloc(1, sizeof(*e));
                if (!e)
                        return ret;
                e->code = errnum;
                e->msg = strdup(strerror(errnum));
                if (!e->msg) {
                        free(e);
                        return ret;
                }
                *err = e;
        }

        char *prefix = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&prefix, fmt, ap);
        va_end(ap);
        if (n < 0)
                return ret;

        char *full = NULL;
        if (asprintf(&full, "%s: %s", prefix, (*err)->msg) >= 0) {
                free((*err)->msg);
                (*err)->msg = full;
        }
        free(prefix);
        return ret;
}

struct us_error *us_error_free(struct us_error *err)
{
        if (err) {
                free(err->msg);
                free(err);
        }
        return NULL;
}

const char *us_error_text(const struct us_error *err)
{
        return err && err->msg ? err->msg : "unknown error";
}
