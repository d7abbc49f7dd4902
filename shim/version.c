/* SPDX-License-Identifier: Apache-2.0 */
#include "version.h"

const char shim_version[] = "0.1.0";
