"""The sandbox's view of the host: this interpreter, its stdlib and libraries, nothing else."""

from __future__ import annotations

import os
import sys

from harness.tools.sandbox_view import INTERPRETER, LIBRARY_DIR, ROOT, python_view


def test_the_view_is_the_interpreter_its_stdlib_and_libraries() -> None:
    view = python_view()
    dests = [dest for _, dest in view.binds]
    assert (os.path.realpath(sys.executable), INTERPRETER) in view.binds
    assert any(
        d.startswith(f"{ROOT}/") and d.endswith(f"python3.{sys.version_info.minor}") for d in dests
    )
    libs = [d for d in dests if d.startswith(LIBRARY_DIR + "/")]
    assert any("libc.so" in d for d in libs)
    outside = [d for d in dests if not d.startswith(ROOT + "/")]
    assert all(d.startswith(("/lib", "/usr/lib")) for d in outside), outside  # the loader
    assert not any(d.startswith(("/root", "/home", "/etc", "/tmp", "/work")) for d in dests)


def test_installed_packages_are_covered() -> None:
    view = python_view()
    assert any(m.endswith("/site-packages") for m in view.masks)
