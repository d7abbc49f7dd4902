/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* SHA-256 (FIPS 180-4). The shim needs it for containerd's socket address
 * (sha256 of "<address>/<namespace>/<group>"); a crypto library for one
 * digest would cost more memory per shim than this file. */

#include <stddef.h>
#include <stdint.h>

#define US_SHA256_DIGEST_SIZE 32

void us_sha256(const void *data, size_t len, uint8_t out[US_SHA256_DIGEST_SIZE]);

/* Lowercase hex of the digest into out (65 bytes with the NUL). */
void us_sha256_hex(const void *data, size_t len, char out[2 * US_SHA256_DIGEST_SIZE + 1]);
