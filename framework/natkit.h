/* natkit.h: the one header applications and plugins include
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#define __NATKIT_H_INSIDE__

#include "natkit-version-macros.h"
#include "natkit-version.h"
#include "natkit-enums.h"
#include "natkit-enum-types.h"
#include "natkit-error.h"
#include "natkit-identity.h"
#include "natkit-config.h"
#include "natkit-nat-info.h"
#include "natkit-path.h"
#include "natkit-stream-path.h"
#include "natkit-signaling.h"
#include "natkit-rendezvous.h"
#include "natkit-traversal-request.h"
#include "natkit-traversal.h"
#include "natkit-transport.h"
#include "natkit-tunnel.h"
#include "natkit-port-mapping-request.h"
#include "natkit-port-mapping.h"
#include "natkit-port-mapper.h"
#include "natkit-plugin.h"
#include "natkit-plugin-info.h"
#include "natkit-connection.h"
#include "natkit-manager.h"
#include "natkit-network.h"

#undef __NATKIT_H_INSIDE__
