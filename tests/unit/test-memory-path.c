/* test-memory-path.c: an in-memory NatkitPath pair that misbehaves on demand
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "test-memory-path.h"

typedef struct
{
  gint64  due;      /* monotonic µs */
  GBytes *datagram;
} Pending;

struct _TestMemoryPath
{
  NatkitPath      parent_instance;

  TestMemoryPath *peer;       /* weak */
  GMainContext   *context;
  GQueue          queue;      /* Pending, waiting for delivery to this end */
  GSource        *source;

  GRand          *rand;
  double          loss, duplicate, reorder;
  guint           latency_ms;
  guint64         sent, dropped;
  /* a bottleneck: a link of this many bytes/s behind a tail-drop queue */
  guint           rate;
  guint           queue_bytes;
  gint64          link_free_at;   /* when the link has sent what it holds */
};

G_DEFINE_FINAL_TYPE (TestMemoryPath, test_memory_path, NATKIT_TYPE_PATH)

static void
pending_free (gpointer data)
{
  Pending *p = data;

  g_bytes_unref (p->datagram);
  g_free (p);
}

static void
schedule (TestMemoryPath *self)
{
  Pending *head = g_queue_peek_head (&self->queue);

  g_source_set_ready_time (self->source, head ? head->due : -1);
}

static gboolean
deliver_cb (gpointer user_data)
{
  TestMemoryPath *self = user_data;
  gint64 now = g_get_monotonic_time ();
  guint budget = self->queue.length;
  Pending *p;

  g_object_ref (self);
  /* only what was queued before: what the delivery makes the peer send
   * waits for the next turn of the loop */
  while (budget-- > 0 && (p = g_queue_peek_head (&self->queue)) != NULL &&
         p->due <= now && !natkit_path_is_closed (NATKIT_PATH (self)))
    {
      g_queue_pop_head (&self->queue);
      natkit_path_deliver (NATKIT_PATH (self), p->datagram);
      pending_free (p);
    }
  if (!natkit_path_is_closed (NATKIT_PATH (self)))
    schedule (self);
  g_object_unref (self);
  return G_SOURCE_CONTINUE;
}

static gboolean
dispatch (GSource     *source,
          GSourceFunc  callback,
          gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs deliver_funcs = { NULL, NULL, dispatch, NULL, NULL, NULL };

static void
enqueue (TestMemoryPath *to,
         GBytes         *datagram,
         gint64          due,
         gboolean        reorder)
{
  Pending *p = g_new0 (Pending, 1);

  p->due = due;
  p->datagram = g_bytes_ref (datagram);
  if (reorder && to->queue.length > 0)
    {
      /* overtake the previous datagram */
      Pending *last = g_queue_peek_tail (&to->queue);

      p->due = last->due;
      g_queue_insert_before (&to->queue, to->queue.tail, p);
    }
  else
    g_queue_push_tail (&to->queue, p);
  schedule (to);
}

static gboolean
test_memory_path_send (NatkitPath  *path,
                       GBytes      *datagram,
                       GError     **error)
{
  TestMemoryPath *self = TEST_MEMORY_PATH (path);
  TestMemoryPath *peer = self->peer;
  gint64 due;

  self->sent++;
  if (peer == NULL || natkit_path_is_closed (NATKIT_PATH (peer)))
    return TRUE;

  if (self->loss > 0 && g_rand_double (self->rand) < self->loss)
    {
      self->dropped++;
      return TRUE;
    }

  due = g_get_monotonic_time () + (gint64) self->latency_ms * 1000;
  if (self->rate > 0)
    {
      gint64 now = g_get_monotonic_time ();
      gsize len = g_bytes_get_size (datagram);
      gint64 start = MAX (now, self->link_free_at);

      /* what waits for the link, in bytes: a full queue drops the tail */
      if ((start - now) * (gint64) self->rate / G_USEC_PER_SEC + (gint64) len >
          (gint64) self->queue_bytes)
        {
          self->dropped++;
          return TRUE;
        }
      self->link_free_at = start + (gint64) len * G_USEC_PER_SEC / self->rate;
      due = self->link_free_at + (gint64) self->latency_ms * 1000;
    }
  enqueue (peer, datagram, due,
           self->reorder > 0 && g_rand_double (self->rand) < self->reorder);
  if (self->duplicate > 0 && g_rand_double (self->rand) < self->duplicate)
    enqueue (peer, datagram, due, FALSE);
  return TRUE;
}

static void
test_memory_path_close (NatkitPath *path)
{
  TestMemoryPath *self = TEST_MEMORY_PATH (path);
  TestMemoryPath *peer = self->peer;

  g_source_set_ready_time (self->source, -1);
  g_queue_clear_full (&self->queue, pending_free);

  if (peer != NULL)
    {
      g_autoptr(GError) error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                             "the peer closed the memory path");

      g_object_remove_weak_pointer (G_OBJECT (peer), (gpointer *) &self->peer);
      g_object_remove_weak_pointer (G_OBJECT (self), (gpointer *) &peer->peer);
      self->peer = NULL;
      peer->peer = NULL;
      natkit_path_fail (NATKIT_PATH (peer), error);
    }
}

static void
test_memory_path_finalize (GObject *object)
{
  TestMemoryPath *self = TEST_MEMORY_PATH (object);

  g_source_destroy (self->source);
  g_source_unref (self->source);
  g_queue_clear_full (&self->queue, pending_free);
  g_rand_free (self->rand);
  g_main_context_unref (self->context);
  G_OBJECT_CLASS (test_memory_path_parent_class)->finalize (object);
}

static void
test_memory_path_class_init (TestMemoryPathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_memory_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = test_memory_path_send;
  NATKIT_PATH_CLASS (klass)->close = test_memory_path_close;
}

static void
test_memory_path_init (TestMemoryPath *self)
{
  static guint32 seed = 1;

  self->context = g_main_context_ref_thread_default ();
  g_queue_init (&self->queue);
  self->rand = g_rand_new_with_seed (seed++);
  self->source = g_source_new (&deliver_funcs, sizeof (GSource));
  g_source_set_callback (self->source, deliver_cb, self, NULL);
  g_source_set_static_name (self->source, "[test] memory path");
  g_source_attach (self->source, self->context);
}

void
test_memory_path_new_pair (const char      *method,
                           guint            mtu,
                           TestMemoryPath **a,
                           TestMemoryPath **b)
{
  TestMemoryPath *pa, *pb;

  pa = g_object_new (TEST_TYPE_MEMORY_PATH, "method", method, "mtu", mtu,
                     "transport", "memory", "local-address", "a",
                     "remote-address", "b", NULL);
  pb = g_object_new (TEST_TYPE_MEMORY_PATH, "method", method, "mtu", mtu,
                     "transport", "memory", "local-address", "b",
                     "remote-address", "a", NULL);
  pa->peer = pb;
  pb->peer = pa;
  g_object_add_weak_pointer (G_OBJECT (pb), (gpointer *) &pa->peer);
  g_object_add_weak_pointer (G_OBJECT (pa), (gpointer *) &pb->peer);
  *a = pa;
  *b = pb;
}

void
test_memory_path_set_bottleneck (TestMemoryPath *self,
                                 guint           bytes_per_second,
                                 guint           queue_bytes)
{
  self->rate = bytes_per_second;
  self->queue_bytes = queue_bytes;
}

void
test_memory_path_set_loss (TestMemoryPath *self,
                           double          rate)
{
  self->loss = rate;
}

void
test_memory_path_set_duplicate (TestMemoryPath *self,
                                double          rate)
{
  self->duplicate = rate;
}

void
test_memory_path_set_reorder (TestMemoryPath *self,
                              double          rate)
{
  self->reorder = rate;
}

void
test_memory_path_set_latency (TestMemoryPath *self,
                              guint           ms)
{
  self->latency_ms = ms;
}

void
test_memory_path_set_seed (TestMemoryPath *self,
                           guint32         seed)
{
  g_rand_set_seed (self->rand, seed);
}

guint64
test_memory_path_get_sent (TestMemoryPath *self)
{
  return self->sent;
}

guint64
test_memory_path_get_dropped (TestMemoryPath *self)
{
  return self->dropped;
}

void
test_memory_path_inject (TestMemoryPath *self,
                         GBytes         *datagram)
{
  natkit_path_deliver (NATKIT_PATH (self), datagram);
}
