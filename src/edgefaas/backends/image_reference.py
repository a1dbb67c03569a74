"""Container image references, as the distribution registry and containerd read them.

``[registry[:port]/]path[:tag][@sha256:<64 hex>]``: the grammar of the distribution project's
``reference`` package (lowercase path components joined by ``.``, ``_``, ``__`` or dashes; a
tag of at most 128 word characters, dots and dashes; a name of at most 255 characters).
Checked before anything is created, so a typo is a 400 naming the field, not a pod that
cannot pull.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
NAME_MAX = 255
# What containerd assumes when a reference names no registry (Docker Hub's name).
DEFAULT_DOMAIN = "docker.io"


class InvalidReference(ValueError):
    """Not an image reference; the message says what a reference looks like."""


@dataclass(frozen=True)
class ImageReference:
    domain: str  # "" when the reference names no registry
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def registry(self) -> str:
        """The registry a node pulls from: the domain, else Docker Hub."""
        return self.domain or DEFAULT_DOMAIN


def parse(text: str) -> ImageReference:
    """``text`` as an ImageReference; InvalidReference naming what is wrong."""
    match = _REFERENCE.match(text)
    if match is None:
        raise InvalidReference(
            f"{text!r} is not an image reference: [registry[:port]/]name[:tag][@sha256:digest], "
            "the name in lowercase letters, digits and . _ - separators"
        )
    reference = ImageReference(
        domain=match["domain"] or "",
        path=match["path"],
        tag=match["tag"],
        digest=match["digest"],
    )
    # A first component with neither a dot, a port nor "localhost" is a path, as Docker reads it.
    domain = reference.domain
    if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain.startswith("[")):
        if domain != domain.lower():
            raise InvalidReference(f"{text!r} is not an image reference: repository names are lowercase")
        reference = ImageReference("", f"{domain}/{reference.path}", reference.tag, reference.digest)
    if len(reference.name) > NAME_MAX:
        raise InvalidReference(f"{text!r} is not an image reference: its name is over {NAME_MAX} characters")
    digest = reference.digest or ""
    if digest.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise InvalidReference(f"{text!r}: a sha256 digest is 64 lowercase hexadecimal digits")
    return reference


def registry_host(address: str, port: int) -> str:
    """How references name a registry at ``address``:``port`` (IPv6 in brackets)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"{host}:{port}"
