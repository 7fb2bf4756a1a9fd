"""Which sensor wrote a document, and at which site: many sensors ship into one cluster.

Every document carries ``observer.name`` (the sensor) and ``labels.site``. In the cluster,
asset and edge documents are keyed by site, so the same address at two sites is two
assets, and the same device seen by two sensors of one site is one (merged there).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from otsec import __version__

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
DEFAULT_SITE = "default"


class BadName(ValueError):
    """A site or sensor name that cannot be used in document ids."""


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise BadName(f"{what} {value!r}: use 1-63 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return value


@lru_cache(maxsize=1)
def _hostname() -> str:
    """This machine's short name (asked once: every alert id compares with it)."""
    host = socket.gethostname().split(".")[0]
    return host if NAME.fullmatch(host) else "sensor"


@dataclass(frozen=True)
class Sensor:
    site: str = DEFAULT_SITE
    name: str = field(default_factory=_hostname)
    interface: str | None = None  # the capture interface of a live sensor

    @cached_property
    def observer(self) -> dict[str, Any]:
        """(One dict, shared by the documents of a run: never change it in place.)"""
        doc: dict[str, Any] = {"type": "ids", "vendor": "otsec", "product": "otsec",
                               "version": __version__, "hostname": socket.gethostname(),
                               "name": self.name}
        if self.interface:
            doc["ingress"] = {"interface": {"name": self.interface}}
        return doc

    @cached_property
    def labels(self) -> dict[str, str]:
        return {"site": self.site}

    def summary(self) -> dict[str, str]:
        """Its place in summary.json."""
        return {"site": self.site, "name": self.name}

    def stamp(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Put the sensor's fields into ``doc`` (in place; returned for chaining)."""
        doc["observer"] = self.observer
        doc["labels"] = {**doc.get("labels", {}), **self.labels}
        return doc

    def fragment(self) -> bytes:
        """The same fields as a JSON fragment, for the lines the compiled core writes."""
        body = json.dumps({"observer": self.observer, "labels": self.labels},
                          separators=(",", ":"))
        return b"," + body[1:-1].encode()

    def alert_id(self, local_id: str) -> str:
        """An alert's id: its finding's id, told apart per site and sensor (two sensors'
        alerts about one event are two alerts; a rerun of one sensor is the same one)."""
        if self.site == DEFAULT_SITE and self.name == _hostname():
            return local_id  # one sensor alone: the ids stay those of earlier versions
        text = f"{self.site}|{self.name}|{local_id}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


LOCAL = Sensor()
