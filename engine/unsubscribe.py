"""Signed unsubscribe links: `https://…/unsubscribe?k=<send key>&t=<token>`.

The token is an HMAC-SHA256 of the send key under a secret only Touchflow knows, so a link
cannot be forged or guessed from another one (send keys alone are derived from public facts).
One link unsubscribes the contact its message was for (the contact's address as it is now).

The secret comes from `TOUCHFLOW_UNSUBSCRIBE_SECRET` (every dispatcher and `touchflow serve`
must share it), else from `.touchflow/unsubscribe.key` in the project, created on first use —
enough for one machine, and never committed (`.touchflow/` is ignored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SECRET_ENV = "TOUCHFLOW_UNSUBSCRIBE_SECRET"
PUBLIC_URL_ENV = "TOUCHFLOW_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "https://app.touchflow.example"
KEY_FILE = Path(".touchflow") / "unsubscribe.key"
_TOKEN_BYTES = 16  # 128 bits: unguessable, and the link stays short


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Makes and checks the signed links of one deployment."""

    base_url: str
    secret: bytes

    def __repr__(self) -> str:  # keeps the secret out of logs and tracebacks
        return f"UnsubscribeLinks(base_url={self.base_url!r})"

    def token(self, send_key: str) -> str:
        """The link's signature for `send_key`."""
        digest = hmac.new(self.secret, send_key.encode(), hashlib.sha256).digest()[:_TOKEN_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def url(self, send_key: str) -> str:
        """The unsubscribe link of the message with `send_key`."""
        key = send_key if send_key.isalnum() else quote(send_key, safe="")  # send keys are hex
        return f"{self.base_url}/unsubscribe?k={key}&t={self.token(send_key)}"

    def valid(self, send_key: str, token: str) -> bool:
        """Whether `token` is the signature of `send_key` (compared in constant time)."""
        return bool(send_key) and hmac.compare_digest(self.token(send_key).encode(), token.encode())


def load_links(project_dir: Path | None) -> UnsubscribeLinks:
    """The links of this deployment: the secret from the environment, else the project's key file
    (created when missing); without either, a secret for this process only (previews, tests)."""
    base = os.environ.get(PUBLIC_URL_ENV, DEFAULT_PUBLIC_URL).rstrip("/")
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        return UnsubscribeLinks(base, from_env.encode())
    if project_dir is None:
        return UnsubscribeLinks(base, _PROCESS_SECRET)
    return UnsubscribeLinks(base, _key_file_secret(project_dir / KEY_FILE))


def _key_file_secret(path: Path) -> bytes:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
        # link() fails when the file exists: two processes creating it at once agree on the
        # first one's secret, and nobody ever reads a half-written file.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="ascii").strip().encode()


_PROCESS_SECRET = secrets.token_bytes(32)
