"""Credentials in URLs never reach what is written or printed."""

from __future__ import annotations

import base64

from harness.redact import redact, split_credentials
from harness.server import AttachedServer


def test_redact_removes_userinfo_and_secret_query_values() -> None:
    text = "harness run w.yaml --server http://user:s3cret@gpu-node:8000/v1?api_key=abc&x=1"
    out = redact(text)
    assert "s3cret" not in out and "abc" not in out
    assert "http://***@gpu-node:8000/v1?api_key=***&x=1" in out


def test_redact_leaves_plain_urls_alone() -> None:
    assert redact("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_split_credentials_turns_them_into_basic_auth() -> None:
    url, auth = split_credentials("http://user:p%40ss@host:8000")
    assert url == "http://host:8000"
    assert auth == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert split_credentials("http://host:8000") == ("http://host:8000", None)


def test_an_attached_server_keeps_credentials_out_of_its_url() -> None:
    server = AttachedServer("http://user:key@127.0.0.1:9")
    assert server.base_url == "http://127.0.0.1:9"
    assert "key" not in server.base_url
