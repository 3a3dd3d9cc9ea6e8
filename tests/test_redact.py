"""Masking secrets in text that leaves the process."""

from __future__ import annotations

from bot.redact import MASK, redact, secret_parts
from tests.fakegithub import private_key_pem


def test_a_pem_key_is_masked_line_by_line() -> None:
    pem = private_key_pem()
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    parts = secret_parts([pem, None, "", "ghs_token123"])
    echoed = f"$ cat key.pem\n{body[3]}\n{body[4]}\nok ghs_token123."
    masked = redact(echoed, parts)
    assert body[3] not in masked and body[4] not in masked and "ghs_token123" not in masked
    assert masked == f"$ cat key.pem\n{MASK}\n{MASK}\nok {MASK}."
    assert redact(pem, parts) == MASK  # the whole key goes before its lines
    assert "-----BEGIN PRIVATE KEY-----" not in parts


def test_nothing_else_is_masked() -> None:
    assert redact("plain text, short lines\n", secret_parts(["a\nbb\n", None])) == "plain text, short lines\n"
