/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Container, exec and pod ids: containerd's identifier rule, the one rule
 * the shim, the engine and the guest agent all check (an id names
 * directories, cgroups and state files, so it must never be a path).
 */

#include <stdbool.h>

#include "error.h"

/* containerd's identifiers.Validate length limit. */
#define US_ID_MAX 76

/* [A-Za-z0-9][A-Za-z0-9_.-]*, 1..US_ID_MAX bytes. */
bool us_id_valid(const char *id);

/* us_id_valid with a message naming what (e.g. "container id") and why. */
int us_id_check(const char *what, const char *id, struct us_error **err);
