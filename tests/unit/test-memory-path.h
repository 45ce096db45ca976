/* test-memory-path.h: an in-memory NatkitPath pair that misbehaves on demand
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * For the session tests, the session fuzz target and the session benchmark.
 * Each end can lose, duplicate and reorder what it sends and delay it;
 * delivery is always from the main loop, never re-entrant, like a socket.
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

#define TEST_TYPE_MEMORY_PATH (test_memory_path_get_type ())
G_DECLARE_FINAL_TYPE (TestMemoryPath, test_memory_path, TEST, MEMORY_PATH, NatkitPath)

void     test_memory_path_new_pair      (const char      *method,
                                         guint            mtu,
                                         TestMemoryPath **a,
                                         TestMemoryPath **b);
/* What happens to the datagrams this end sends. Rates are 0 … 1. */
void     test_memory_path_set_loss      (TestMemoryPath  *self,
                                         double           rate);
void     test_memory_path_set_duplicate (TestMemoryPath  *self,
                                         double           rate);
void     test_memory_path_set_reorder   (TestMemoryPath  *self,
                                         double           rate);
void     test_memory_path_set_latency   (TestMemoryPath  *self,
                                         guint            ms);
/* A link of @bytes_per_second behind a tail-drop queue of @queue_bytes
 * (a relay's socket buffer): what does not fit is dropped. 0 turns it off. */
void     test_memory_path_set_bottleneck (TestMemoryPath *self,
                                          guint           bytes_per_second,
                                          guint           queue_bytes);
void     test_memory_path_set_seed      (TestMemoryPath  *self,
                                         guint32          seed);
guint64  test_memory_path_get_sent      (TestMemoryPath  *self);
guint64  test_memory_path_get_dropped   (TestMemoryPath  *self);
/* Hands @datagram to this end's users as if it had arrived. */
void     test_memory_path_inject        (TestMemoryPath  *self,
                                         GBytes          *datagram);

G_END_DECLS
