/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The one process-wide setting: the level is fixed once by main() from -debug. */
static enum us_log_level max_level = US_LOG_INFO;

void us_log_set_level(enum us_log_level level)
{
        max_level = level;
}

static const char *const level_names[] = {
        [US_LOG_ERROR] = "error",
        [US_LOG_WARN] = "warning",
        [US_LOG_INFO] = "info",
        [US_LOG_DEBUG] = "debug",
};

void us_log(enum us_log_level level, const char *fmt, ...)
{
        if (level > max_level)
                return;

        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        /* logfmt quoting: escape backslash and double quote, flatten newlines. */
        char quoted[4200];
        size_t o = 0;
        for (const char *p = msg; *p && o + 3 < sizeof(quoted); p++) {
                if (*p == '"' || *p == '\\')
                        quoted[o++] = '\\';
                quoted[o++] = (*p == '\n') ? ' ' : *p;
        }
        quoted[o] = '\0';

        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[64];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

        fprintf(stderr, "time=\"%s.%09ldZ\" level=%s msg=\"%s\" runtime=unishim\n", when,
                ts.tv_nsec, level_names[level], quoted);
}
