# natkit NAT lab: minimal TAP producer shared by the lab tests.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""TAP output for the lab tests.

Skipping: "1..0 # SKIP reason" and exit status NATLAB_SKIP_EXIT (default 77,
the automake/meson skip code).  meson's TAP protocol treats any non-zero exit
as an error, so tests/lab/meson.build sets NATLAB_SKIP_EXIT=0 and meson then
reports the test as SKIP from the plan line.
"""

import os
import sys
import time


def skip_exit_code():
    try:
        return int(os.environ.get("NATLAB_SKIP_EXIT", "77"))
    except ValueError:
        return 77


def skip_all(reason):
    sys.stdout.write("1..0 # SKIP %s\n" % reason)
    sys.stdout.flush()
    sys.stderr.write("%s\n" % reason)
    sys.exit(skip_exit_code())


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def diag(self, text):
        for line in str(text).splitlines() or [""]:
            sys.stdout.write("# %s\n" % line)
        sys.stdout.flush()

    def ok(self, cond, desc, diag=None):
        self.n += 1
        if not cond:
            self.failed += 1
        sys.stdout.write("%s %d - %s\n" % ("ok" if cond else "not ok",
                                           self.n, desc))
        if not cond and diag is not None:
            self.diag(diag)
        sys.stdout.flush()
        return bool(cond)

    def done(self):
        sys.stdout.write("1..%d\n" % self.n)
        self.diag("%d/%d passed in %.1f s" % (self.n - self.failed, self.n,
                                              time.monotonic() - self.t0))
        sys.stdout.flush()
        return 1 if self.failed or self.n == 0 else 0
