/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A growing text buffer for documents built piece by piece (iptables-restore
 * input, YAML, XML). An allocation failure sticks: every later append is a
 * no-op and us_text_take() returns NULL, so a builder checks once, at the
 * end. The text is always NUL-terminated once anything was appended.
 */

#include <stdbool.h>
#include <stddef.h>

struct us_text {
        char *s;
        size_t len, cap;
        bool oom;
};

void us_text_append(struct us_text *t, const char *s, size_t n);
void us_text_add(struct us_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the text, keeping its memory. */
void us_text_reset(struct us_text *t);
/* The text (the caller's to free; "" if nothing was appended), or NULL
 * after an allocation failure. t is empty afterwards. */
char *us_text_take(struct us_text *t);
