/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* unishimctl template build|list|gc|rm (argv[0] is "template"). Returns the
 * exit status: 0, 1 on an error (printed), 2 on a usage error, 3 when the
 * key is busy (another build holds it). */
int unishimctl_template(int argc, char **argv);
