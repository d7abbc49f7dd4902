/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Logging for main() and RPC handler tops only; library code reports through
 * struct us_error instead. Lines go to stderr in logfmt, which is what
 * containerd reads from a v2 shim's log FIFO and copies into its own log.
 */

enum us_log_level {
        US_LOG_ERROR,
        US_LOG_WARN,
        US_LOG_INFO,
        US_LOG_DEBUG,
};

void us_log_set_level(enum us_log_level level);
void us_log(enum us_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define us_log_error(...) us_log(US_LOG_ERROR, __VA_ARGS__)
#define us_log_warn(...)  us_log(US_LOG_WARN, __VA_ARGS__)
#define us_log_info(...)  us_log(US_LOG_INFO, __VA_ARGS__)
#define us_log_debug(...) us_log(US_LOG_DEBUG, __VA_ARGS__)
