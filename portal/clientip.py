"""The client's address: the one setting `PORTAL_TRUSTED_PROXIES`, read through python-ipware
(django-ipware's engine). django-axes (`AXES_CLIENT_IP_CALLABLE`), the API's failed-key throttle
and the audit log all ask here, so they cannot disagree.

Each reverse proxy appends the address it was connected from to `X-Forwarded-For`, and the last
one connects to us (`REMOTE_ADDR`). So the chain `X-Forwarded-For + REMOTE_ADDR` is read from the
right: its last entries must be the trusted proxies, in order, and the entry before them is the
client. Anything further left was written by the client and is ignored. A request whose
`REMOTE_ADDR` is not a trusted proxy (someone reaching the portal around the proxy) is its own
client, whatever `X-Forwarded-For` it sends.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest
from python_ipware import IpWare


@lru_cache(maxsize=4)
def _ipware(proxies: tuple[str, ...]) -> IpWare:
    return IpWare(precedence=("HTTP_X_FORWARDED_FOR",), proxy_list=list(proxies), leftmost=True)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as text, or None when the request carries no usable address."""
    remote = str(request.META.get("REMOTE_ADDR") or "").strip()
    proxies = tuple(settings.PORTAL_TRUSTED_PROXIES)
    address: object = remote
    if proxies and remote:
        forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "").strip()
        chain = f"{forwarded}, {remote}" if forwarded else remote
        found, _trusted = _ipware(proxies).get_client_ip(
            {"HTTP_X_FORWARDED_FOR": chain}, strict=False
        )
        address = found or remote
    try:
        return str(ipaddress.ip_address(str(address))) if address else None
    except ValueError:
        return None
