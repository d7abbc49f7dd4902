/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "id.h"

static bool alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int us_id_check(const char *what, const char *id, struct us_error **err)
{
        if (!id || !id[0])
                return us_error_msg(err, EINVAL, "%s is empty", what);
        size_t n = strnlen(id, US_ID_MAX + 1);
        if (n > US_ID_MAX)
                return us_error_msg(err, EINVAL, "%s is longer than %d bytes", what, US_ID_MAX);
        if (!alnum(id[0]))
                return us_error_msg(err, EINVAL, "%s must start with a letter or digit", what);
        for (size_t i = 1; i < n; i++)
                if (!alnum(id[i]) && id[i] != '_' && id[i] != '.' && id[i] != '-')
                        return us_error_msg(err, EINVAL,
                                            "%s has a character outside [A-Za-z0-9_.-]", what);
        return 0;
}

bool us_id_valid(const char *id)
{
        return us_id_check("id", id, NULL) == 0;
}
