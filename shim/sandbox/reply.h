/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Decoding of the guest agent's answers to the long polls. The guest is
 * hostile: each function checks the message and its values against what
 * the shim asked for, and answers -EBADMSG for anything else.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* ReadStream: at most max_len bytes of data (copied into *ret_data,
 * malloc()ed, NULL when empty) and the end-of-stream flag. */
int sandbox_reply_read_stream(const uint8_t *payload, size_t len, size_t max_len,
                              uint8_t **ret_data, size_t *ret_len, bool *ret_eof,
                              struct us_error **err);

/* WaitProcess: an exit status as the shim reports it (0..255, or 128 +
 * signal up to 128 + 64). */
int sandbox_reply_wait(const uint8_t *payload, size_t len, uint32_t *ret_status,
                       struct us_error **err);

/* WriteStdin: 0 when the guest says it took all `sent` bytes (the agent
 * answers once all of a write is in), -EBADMSG for anything else. */
int sandbox_reply_write_stdin(const uint8_t *payload, size_t len, size_t sent,
                              struct us_error **err);
