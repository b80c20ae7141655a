"""Did-you-mean: the known names closest to a mistyped one (keys, choices, file and catalog
names), so an error can say what was probably meant. Pure functions over names (difflib)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

MAX_SUGGESTIONS = 3
CUTOFF = 0.6
"""difflib's similarity ratio a known name needs to be suggested."""

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalised(name: str) -> str:
    """A name compared ignoring case, spaces, hyphens and underscores (`H100 SXM`, `h100_sxm`
    and `H100-SXM` are one name)."""
    return _SEPARATORS.sub("", name).casefold()


def close_names(
    word: str, known: Iterable[str], *, loose: bool = False, n: int = MAX_SUGGESTIONS
) -> list[str]:
    """The known names most like `word`, best first (none when nothing is close); `loose`
    compares them as `normalised` does."""
    names = list(dict.fromkeys(known))
    if not loose:
        return difflib.get_close_matches(word, names, n=n, cutoff=CUTOFF)
    forms: dict[str, str] = {}
    for name in names:
        forms.setdefault(normalised(name), name)
    found = difflib.get_close_matches(normalised(word), list(forms), n=n, cutoff=CUTOFF)
    return [forms[f] for f in found]


def find_name(word: str, known: Iterable[str]) -> str | None:
    """The known name `word` stands for: itself, else the one equal to it once `normalised`
    (where exactly one is), else None."""
    names = list(known)
    if word in names:
        return word
    same = [name for name in names if normalised(name) == normalised(word)]
    return same[0] if len(same) == 1 else None


def did_you_mean(words: Iterable[str]) -> str:
    """` (did you mean 'a' or 'b'?)` for the suggestions, or "" for none."""
    quoted = [f"'{w}'" for w in words]
    if not quoted:
        return ""
    if len(quoted) == 1:
        return f" (did you mean {quoted[0]}?)"
    return f" (did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?)"


def suggest(word: str, known: Iterable[str], *, loose: bool = False) -> str:
    """` (did you mean ...?)` for the known names close to `word`, or ""."""
    return did_you_mean(close_names(word, known, loose=loose))


def close_files(path: Path, also_in: Iterable[Path] = ()) -> list[str]:
    """Existing files whose names are close to a missing `path`'s, from its own folder and
    from `also_in` (e.g. workloads/), written as the path to type (`workloads/x.yaml`)."""
    found: list[str] = []
    folders = [path.parent, *also_in]
    for folder in dict.fromkeys(folders):
        try:
            names = sorted(p.name for p in folder.iterdir() if p.is_file())
        except OSError:
            continue
        found.extend(str(folder / name) for name in close_names(path.name, names))
    return list(dict.fromkeys(found))[:MAX_SUGGESTIONS]
