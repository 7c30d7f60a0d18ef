"""Ray addresses: the forms ``RAY_ADDRESS`` (and ``--address``) may take, and what each reaches."""

import ipaddress
import re
from collections.abc import Mapping
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
