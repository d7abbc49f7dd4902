/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* Room for n more bytes and the NUL; doubling, so appends cost amortised
 * O(1) per byte. */
static bool reserve(struct us_text *t, size_t n)
{
        if (t->oom)
                return false;
        if (t->len + n + 1 <= t->cap)
                return true;
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
                cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) {
                t->oom = true;
                return false;
        }
        t->s = s;
        t->cap = cap;
        return true;
}

void us_text_append(struct us_text *t, const char *s, size_t n)
{
        if (!reserve(t, n))
                return;
        memcpy(t->s + t->len, s, n);
        t->len += n;
        t->s[t->len] = '\0';
}

void us_text_add(struct us_text *t, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
                t->oom = true;
                return;
        }
        if (!reserve(t, (size_t)n))
                return;
        va_start(ap, fmt);
        (void)vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        t->len += (size_t)n;
}

void us_text_reset(struct us_text *t)
{
        t->len = 0;
        if (t->s)
                t->s[0] = '\0';
}

char *us_text_take(struct us_text *t)
{
        char *s = t->oom ? NULL : t->s ? t->s : strdup("");
        if (t->oom)
                free(t->s);
        *t = (struct us_text){0};
        return s;
}
