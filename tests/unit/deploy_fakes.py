"""Stand-ins for pyinfra's host objects in the deploy helpers' tests: name, groups, data, facts."""

from __future__ import annotations

from typing import Any


class Data(dict):
    """Host data readable as attributes and with .get(), like pyinfra's HostData."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class FakeHost:
    """A host with `facts` answering get_fact by fact class."""

    def __init__(
        self, name: str, groups: tuple[str, ...] = (), facts: dict | None = None, **data: Any
    ) -> None:
        self.name, self.groups, self.data = name, tuple(groups), Data(data)
        self.facts = facts or {}

    def get_fact(self, fact: type, **kwargs: Any) -> Any:
        return self.facts[fact]
