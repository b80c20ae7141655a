"""What the sandbox shows of the host: this Python's interpreter, its standard library and the
shared libraries they load, read-only, and nothing else.

Inside, the layout is fixed, whatever the host's: the interpreter is `/python/bin/python3`, the
standard library `/python/<platlibdir>/pythonX.Y` (its `site-packages` covered by an empty
directory), the shared libraries of the interpreter and of the stdlib's extension modules
(found with `ldd`) sit in `/python/.libs` on LD_LIBRARY_PATH, and the dynamic loader is at the
path the interpreter names. Host paths such as /root or the harness's checkout never appear.
Where `ldd` is missing, the host's standard library folders are shown read-only instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = "/python"
INTERPRETER = f"{ROOT}/bin/python3"
LIBRARY_DIR = f"{ROOT}/.libs"
_SKIP_MODULES = ("_tkinter",)
"""Extension modules whose libraries (X11, Tk) a generated program never needs."""
_LDD_LINE = re.compile(r"^\s*(\S+)\s*=>\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LOADER_LINE = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_FALLBACK_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
_LDD_TIMEOUT_S = 30.0


class ViewError(Exception):
    """This interpreter's layout cannot be shown in the sandbox."""


@dataclass(frozen=True, slots=True)
class View:
    """Read-only binds (host source, sandbox destination) and the empty folders over them."""

    binds: tuple[tuple[str, str], ...]
    masks: tuple[str, ...]
    interpreter: str = INTERPRETER
    library_dir: str = LIBRARY_DIR


def _stdlib() -> Path:
    """The standard library folder, which holds lib-dynload (the extension modules)."""
    stdlib = Path(os.path.realpath(sysconfig.get_path("stdlib")))
    if not (stdlib / "os.py").is_file():
        raise ViewError(f"no os.py in the standard library folder {stdlib}")
    dynload = sysconfig.get_config_var("DESTSHARED")
    if isinstance(dynload, str) and Path(dynload).is_dir():
        real = Path(os.path.realpath(dynload))
        if stdlib not in real.parents:
            raise ViewError(f"lib-dynload {real} is outside the standard library {stdlib}")
    return stdlib


def _ldd(paths: list[str]) -> tuple[dict[str, str], str | None]:
    """{soname: host path} of the libraries `paths` load, and the dynamic loader's path."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ViewError("ldd not found")
    try:
        out = subprocess.run(
            [ldd, *paths],
            capture_output=True,
            text=True,
            timeout=_LDD_TIMEOUT_S,
            env={"PATH": os.defpath, "LC_ALL": "C"},
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ViewError(f"ldd failed: {exc}") from None
    libs: dict[str, str] = {}
    loader: str | None = None
    for line in out.splitlines():
        if m := _LDD_LINE.match(line):
            libs.setdefault(m.group(1), m.group(2))
        elif (m := _LOADER_LINE.match(line)) and loader is None:
            loader = m.group(1)
    return libs, loader


@cache
def python_view() -> View:
    """The view of this interpreter (computed once per process: `ldd` takes a moment)."""
    exe = os.path.realpath(sys.executable)
    if not os.access(exe, os.X_OK):
        raise ViewError(f"interpreter {exe} is not executable")
    stdlib = _stdlib()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib_dest = f"{ROOT}/{sys.platlibdir}/{version}"
    binds: list[tuple[str, str]] = [(exe, INTERPRETER), (str(stdlib), stdlib_dest)]
    masks = [
        f"{stdlib_dest}/{d}" for d in ("site-packages", "dist-packages") if (stdlib / d).is_dir()
    ]
    dynload = stdlib / "lib-dynload"
    modules = sorted(
        str(p)
        for p in (dynload.glob("*.so") if dynload.is_dir() else [])
        if not p.name.startswith(_SKIP_MODULES)
    )
    try:
        libs, loader = _ldd([exe, *modules])
    except ViewError:
        libs, loader = {}, None
    if loader is None:
        binds += [(d, d) for d in _FALLBACK_LIB_DIRS if os.path.isdir(d)]
        libdir = sysconfig.get_config_var("LIBDIR")
        if isinstance(libdir, str) and os.path.isdir(libdir):
            binds.append((os.path.realpath(libdir), LIBRARY_DIR))
        return View(tuple(binds), tuple(masks))
    binds += [(os.path.realpath(path), f"{LIBRARY_DIR}/{name}") for name, path in libs.items()]
    binds.append((os.path.realpath(loader), loader))
    return View(tuple(binds), tuple(masks))
