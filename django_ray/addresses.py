"""Ray addresses: the forms ``RAY_ADDRESS`` (and ``--address``) may take, and what each reaches."""

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

RayAddressKind = Literal["local", "auto", "gcs", "client", "jobs"]
_ADDRESS_KINDS: Mapping[str, RayAddressKind] = {
    "": "gcs",
    "ray://": "client",
    "http://": "jobs",
    "https://": "jobs",
}
_HOST_PORT = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]/]+)):(?P<port>[0-9]{1,5})"
)
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")


def classify_ray_address(address: str | None) -> RayAddressKind:
    """Say how ``address`` reaches Ray; raise ``ValueError`` when it has none of the known forms.

    ``None`` is "local", ``"auto"`` is "auto", ``host:port`` is "gcs" (a cluster's GCS),
    ``ray://host:port`` is "client" (Ray Client) and ``http(s)://host:port`` is "jobs"
    (the dashboard's Jobs API).
    """
    if address is None:
        return "local"
    kind = address_kind(address)
    if kind is None:
        raise ValueError(f"{address!r} is not a Ray address of a known form")
    return kind


def address_kind(address: str) -> RayAddressKind | None:
    if address == "auto":
        return "auto"
    scheme, separator, host_port = address.rpartition("://")
    kind = _ADDRESS_KINDS.get(scheme + separator)
    match = _HOST_PORT.fullmatch(host_port)
    if kind is None or match is None or not 1 <= int(match["port"]) <= 65535:
        return None
    if match["host"] is not None:
        return kind if _HOST_NAME.fullmatch(match["host"]) else None
    try:
        ipaddress.IPv6Address(match["ipv6"])
    except ValueError:
        return None
    return kind


ENVIRONMENT_VARIABLE = "RAY_ADDRESS"
SETTING = 'DJANGO_RAY["RAY_ADDRESS"]'


@dataclass(frozen=True, slots=True)
class ChosenAddress:
    """The Ray address a process will use, and where it was read."""

    address: str | None
    """``None``: an embedded Ray, started inside this process."""
    source: str | None
    """``"--address"``, a setting's name or the environment variable; None when none was set."""
    unset: tuple[str, ...] = ()
    """The places looked at before ``source``, all unset."""

    def describe(self) -> str:
        """The line a worker logs when it connects."""
        if self.source is None:
            return (
                f"Ray address unset (no {_either(self.unset)}): "
                "starting an embedded Ray in this process"
            )
        shown = self.address if self.address is not None else "local (embedded)"
        if self.source != f"the {ENVIRONMENT_VARIABLE} environment variable":
            return f"Ray address {shown}, from {self.source}"
        verb = "is" if len(self.unset) == 1 else "are"
        return f"Ray address {shown}, from {self.source} ({_both(self.unset)} {verb} unset)"


def choose_ray_address(
    choices: Sequence[tuple[str, str | None]], environ: Mapping[str, str]
) -> ChosenAddress:
    """The first set address of ``choices`` (``(where, value)`` pairs, already validated),
    else the ``RAY_ADDRESS`` environment variable, else none (an embedded Ray).

    Ray's own ``ray.init()`` reads the variable when given no address; so does this, after
    our settings, so a process started with ``RAY_ADDRESS`` joins that cluster rather than
    start a private one. The variable's ``"local"`` asks for an embedded Ray, as it does for
    ``ray.init()``. Raises ``ValueError`` naming the variable when its value is no address.
    """
    for index, (where, value) in enumerate(choices):
        if value:
            return ChosenAddress(value, where, tuple(name for name, _ in choices[:index]))
    unset = tuple(where for where, _ in choices)
    source = f"the {ENVIRONMENT_VARIABLE} environment variable"
    value = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not value:
        return ChosenAddress(None, None, (*unset, source))
    if value == "local":
        return ChosenAddress(None, source, unset)
    if address_kind(value) is None:
        raise ValueError(
            f"{source} is {value!r}, which is not a Ray address (it is read because "
            f'{_both(unset)} {"is" if len(unset) == 1 else "are"} unset); set it to "auto", '
            '"host:port", "ray://host:port" or "http(s)://host:port" (port 1-65535), or unset it.'
        )
    return ChosenAddress(value, source, unset)


def _both(names: Sequence[str]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _either(names: Sequence[str]) -> str:
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"
