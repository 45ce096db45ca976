/* natkit-port-mapping-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

void _natkit_port_mapping_set_record_file (NatkitPortMapping *self,
                                           const char        *filename);

G_END_DECLS
