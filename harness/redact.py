"""Credentials never leave the process: URLs lose their user:password part before anything is
written or printed, and any text can be scrubbed of credentials it may carry."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:api[_-]?key|key|token|access[_-]?token|secret|password|auth)=)[^&#\s]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with the user:password of any URL and secret-looking query values replaced."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{REDACTED}", text)


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user:password part, and the HTTP Basic `Authorization` value those
    credentials stand for (None when the URL carries none)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, f"Basic {token}"
