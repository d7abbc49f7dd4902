/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The version containerd sees in ConnectResponse and `-v`. */
extern const char shim_version[];
