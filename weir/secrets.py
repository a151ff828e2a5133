"""Kubernetes ``secretKeyRef`` values (``{name, key}``), resolved on the local machine.

A reference made in namespace ``NS`` to secret ``NAME``, key ``KEY`` is looked up in order:

1. the environment variable ``WEIR_SECRET_<NS>_<NAME>_<KEY>``: upper-cased, every character
   other than ``A-Z`` and ``0-9`` replaced by ``_`` (``WEIR_SECRET_SHOP_GITHUB_WEBHOOK_TOKEN`` for
   ``shop/github-webhook``, key ``token``); the value's UTF-8 bytes;
2. the file ``<secrets_dir>/<NS>/<NAME>/<KEY>`` (the layout of a Kubernetes secret volume, one
   directory per namespace); its bytes, one trailing newline removed (``echo`` and editors add
   it; a webhook token never ends with one).

``secrets_dir`` is ``weir run --secrets-dir`` (default ``.weir/secrets``, relative to the working
directory). The environment wins so a deployment can override a file without editing it. Two
references whose names differ only in punctuation map to the same variable name; use files to
tell them apart. An empty value counts as missing: an empty HMAC key or token would accept forged
requests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import WeirError

DEFAULT_SECRETS_DIR = Path(".weir/secrets")
ENV_PREFIX = "WEIR_SECRET_"
_UNSAFE = re.compile(r"[^A-Z0-9]")
_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class SecretNotFound(WeirError):
    """The referenced secret value does not exist (or is empty); the message says where Weir looked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretKeyRef:
    """A ``secretKeyRef``: secret ``name`` (in the referrer's namespace) and ``key`` within it."""

    name: str
    key: str


def env_name(namespace: str, ref: SecretKeyRef) -> str:
    """The environment variable holding ``ref`` for a resource in ``namespace``."""
    return ENV_PREFIX + _UNSAFE.sub("_", f"{namespace}_{ref.name}_{ref.key}".upper())


def is_valid_key(key: str) -> bool:
    """Kubernetes' rule for secret keys: ``[-._a-zA-Z0-9]+``, not ``.``, ``..`` or ``..*``."""
    return bool(_KEY.fullmatch(key)) and not key.startswith("..") and key != "."


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretResolver:
    """Reads secret values from ``environ`` (default: the process environment) and ``secrets_dir``."""

    secrets_dir: Path = DEFAULT_SECRETS_DIR
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def path(self, namespace: str, ref: SecretKeyRef) -> Path:
        """The file holding ``ref`` for a resource in ``namespace``."""
        return self.secrets_dir / namespace / ref.name / ref.key

    def resolve(self, namespace: str, ref: SecretKeyRef) -> bytes:
        """The value of ``ref`` as seen from ``namespace``. Raises :class:`SecretNotFound`."""
        label = f"secret {namespace}/{ref.name} key {ref.key!r}"
        if not is_valid_key(ref.key) or "/" in ref.name or ref.name in (".", ".."):
            raise SecretNotFound(f"{label}: not a valid secret name and key")
        variable = env_name(namespace, ref)
        from_env = self.environ.get(variable)
        if from_env:
            return from_env.encode("utf-8")
        path = self.path(namespace, ref)
        try:
            value = path.read_bytes()
        except FileNotFoundError:
            raise SecretNotFound(f"{label} not found: set {variable} or create {path}") from None
        except OSError as exc:
            raise SecretNotFound(f"{label}: cannot read {path}: {exc.strerror}") from None
        value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
        if not value:
            raise SecretNotFound(f"{label} is empty ({path})")
        return value
