/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The syntax checks every VM description in vmm/ shares (QEMU's argv, the
 * libvirt domain, the cloud-init seed): what a value must look like before
 * it goes into a command line, XML or YAML. */

#include <stdbool.h>
#include <stddef.h>

/* "xx:xx:xx:xx:xx:xx", hex digits of either case. */
bool vmm_mac_valid(const char *s);

/* 1..max characters of [A-Za-z0-9._-]. */
bool vmm_word_valid(const char *s, size_t max);

/* A UUID: 8-4-4-4-12 hex digits. */
bool vmm_uuid_valid(const char *s);
