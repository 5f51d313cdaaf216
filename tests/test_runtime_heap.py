"""A service process leaves its start's objects out of the garbage collector's passes,
after collecting the start's garbage (run in a process of its own: freezing is for the
whole process)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import gc, weakref
from trailseal.runtime import freeze_startup

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the collector frees it
gone = weakref.ref(a)
del a, b
assert gc.get_freeze_count() == 0
freeze_startup()
assert gone() is None, "the start's garbage was frozen, not collected"
frozen = gc.get_freeze_count()
assert frozen > 10_000, frozen  # the modules, classes and functions imported so far
gc.collect()
assert gc.get_freeze_count() == frozen  # a full pass leaves them be
print("ok")
"""


def test_freeze_startup_collects_then_freezes() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
