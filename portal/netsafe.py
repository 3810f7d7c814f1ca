"""Network safety: what the portal may connect to when a customer gives it a URL (SSRF).

A customer's link (a media file for pre-flight, a webhook receiver, a LiveKit server) must never
make the portal reach into our own network. The rules, in one place:

- `address_is_public`: not loopback, private, link-local, CGNAT, multicast, reserved, site-local,
  the IETF protocol assignments (192.0.0.0/24); IPv4 wrapped in IPv6 (mapped, NAT64) is judged
  as the IPv4 address it reaches.
- Internal host names (`localhost`, cloud metadata names, `.internal`, `.local`, ...) are
  refused before any lookup; every address a name resolves to is checked (one private answer
  is enough to refuse).
- Pinning: the connection goes to the address that was checked, not to a second DNS answer
  (rebinding); the Host header and TLS SNI keep the name, so the certificate is checked
  against it. No proxy from the environment, no redirect followed without the same checks.

`UrlFetcher` downloads a link under these rules (pre-flight); `public_url_check` vets a URL the
portal (or bitHuman for us) will connect to later (webhook receivers, the LiveKit URL), and
`pinned_post` sends to the address it returned (webhook deliveries).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from django.conf import settings

from portal.errors import ApplicationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

URL_TIMEOUT_SECONDS = 5.0
URL_MAX_REDIRECTS = 3
FETCH_USER_AGENT = "bitHuman-portal-preflight"


# --- Address rules ------------------------------------------------------------------------------


class UrlRejected(Exception):
    """A link we will not or cannot download; `reason` completes "The image URL ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UrlTooLarge(UrlRejected):
    def __init__(self, *, size: int | None) -> None:
        super().__init__("is too large")
        self.size = size  # None when the server did not say and we stopped reading at the cap


Resolver = Callable[[str, int], Sequence[str]]

# Names that only mean something inside a network (cloud metadata services, mDNS, home routers).
_INTERNAL_HOSTS = frozenset({"localhost", "metadata", "metadata.goog", "instance-data"})
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IETF protocol assignments: Python counts two of them (192.0.0.9, .10: PCP and TURN anycast) as
# global, but no customer media or webhook receiver lives there.
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


def host_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (its own timeout applies)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def host_is_internal(host: str) -> bool:
    """Whether a (lower-case, no trailing dot) host name only means something inside a network."""
    return host in _INTERNAL_HOSTS or host.endswith(_INTERNAL_SUFFIXES)


def address_is_public(address: IPAddress) -> bool:
    """Whether address is on the public internet: not loopback, private, link-local, CGNAT, ..."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host, so judge that one.
        if address.ipv4_mapped is not None:
            return address_is_public(address.ipv4_mapped)
        if address in _NAT64:
            return address_is_public(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
        # Site-local (fec0::/10) is deprecated but still routed inside some networks, and
        # Python counts it as global.
        if address.is_site_local:
            return False
    elif address in _PROTOCOL_ASSIGNMENTS:
        return False
    # Cloud metadata services sit at link-local 169.254.169.254 and ULA fd00:ec2::254, so they
    # are refused with their ranges. is_global alone lets multicast through: check every flag.
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


# --- Pinned connections -------------------------------------------------------------------------


def pinned(
    target: httpx.URL, address: IPAddress | None
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """(URL, headers, request extensions) that connect to `address`, the one just checked, and
    not to whatever a second DNS lookup would answer (DNS rebinding); the Host header and TLS
    SNI keep the real name, so the certificate is still checked against it. `address` None
    (a local receiver allowed by name): the URL as it is."""
    if address is None:
        return target, {}, {}
    return (
        target.copy_with(host=str(address)),
        {"Host": target.netloc.decode("ascii")},
        {"sni_hostname": target.raw_host.decode("ascii")},
    )


class UrlFetcher:
    """Downloads a customer's link safely: https only, public addresses only, small and quick.

    The resolver and the httpx transport are injectable because our machines cannot reach any
    public https server: tests pass an `httpx.MockTransport` and a resolver answering a public
    address.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float = URL_TIMEOUT_SECONDS,
        max_redirects: int = URL_MAX_REDIRECTS,
        resolver: Resolver = host_resolve,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_redirects = max_redirects
        self.resolver = resolver
        self.transport = transport
        self.clock = clock

    def fetch(self, *, url: str, max_bytes: int) -> bytes:
        """The body at url, at most max_bytes long; raises UrlRejected with a customer reason."""
        try:
            return self._fetch(url=url, max_bytes=max_bytes)
        except httpx.TimeoutException as exc:
            raise self._timeout() from exc
        except httpx.ConnectError as exc:
            if _is_tls_error(exc):
                raise UrlRejected(
                    "could not be reached securely (its certificate or encryption was refused)"
                ) from exc
            raise UrlRejected("could not be reached") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise UrlRejected("is not a valid web address") from exc
        except httpx.HTTPError as exc:
            raise UrlRejected("could not be downloaded") from exc

    def _fetch(self, *, url: str, max_bytes: int) -> bytes:
        deadline = self.clock() + self.timeout_seconds
        target = httpx.URL(url)
        # Redirects are followed by hand so that every hop is vetted like the first link.
        with httpx.Client(
            transport=self.transport,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address checks
            headers={"User-Agent": FETCH_USER_AGENT},
        ) as client:
            for hop in range(self.max_redirects + 1):
                try:
                    address = self._target_vet(target)
                except UrlRejected as exc:
                    if hop == 0:
                        raise
                    raise UrlRejected(f"redirected, and the new link {exc.reason}") from exc
                with self._response_open(client, target, address, deadline) as response:
                    if response.is_redirect:
                        target = _redirect_target(target, response.headers["Location"])
                        continue
                    if not response.is_success:
                        raise UrlRejected(
                            f"answered {response.status_code} {response.reason_phrase}"
                        )
                    return self._body_read(response, max_bytes=max_bytes, deadline=deadline)
        raise UrlRejected(f"redirected more than {self.max_redirects} times")

    def _target_vet(self, target: httpx.URL) -> IPAddress:
        """The address to connect to, after checking the scheme and every resolved address."""
        if target.scheme != "https":
            raise UrlRejected("does not start with https://")
        host = target.raw_host.decode("ascii").rstrip(".").lower()
        if not host:
            raise UrlRejected("has no host name")
        if host_is_internal(host):
            raise UrlRejected("points to an internal host name, which we never download from")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._host_addresses(host=host, port=target.port or 443)
        for address in addresses:
            # One private answer is enough to refuse: the connection could pick any of them.
            if not address_is_public(address):
                raise UrlRejected(
                    f"points to a private or internal network address ({address}), which we "
                    "never download from"
                )
        return addresses[0]

    def _host_addresses(self, *, host: str, port: int) -> list[IPAddress]:
        try:
            answers = self.resolver(host, port)
            # Scope ids ("fe80::1%eth0") are not part of the address itself.
            addresses = [ipaddress.ip_address(answer.split("%")[0]) for answer in answers]
        except (OSError, UnicodeError, ValueError) as exc:
            raise UrlRejected("has a host name that could not be found") from exc
        if not addresses:
            raise UrlRejected("has a host name that could not be found")
        return addresses

    @contextmanager
    def _response_open(
        self, client: httpx.Client, target: httpx.URL, address: IPAddress, deadline: float
    ) -> Iterator[httpx.Response]:
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise self._timeout()
        url, headers, extensions = pinned(target, address)
        request = client.build_request(
            "GET", url, headers=headers, extensions=extensions, timeout=httpx.Timeout(remaining)
        )
        response = client.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()

    def _body_read(self, response: httpx.Response, *, max_bytes: int, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise UrlTooLarge(size=int(declared))  # refused before reading any of it
        body = bytearray()
        for chunk in response.iter_bytes():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise UrlTooLarge(size=None)
            # The read timeout is per chunk; this bounds a server that drips bytes slowly.
            if self.clock() > deadline:
                raise self._timeout()
        return bytes(body)

    def _timeout(self) -> UrlRejected:
        return UrlRejected(f"did not answer within {self.timeout_seconds:g} seconds")


def _redirect_target(target: httpx.URL, location: str) -> httpx.URL:
    try:
        return target.join(location)
    except httpx.InvalidURL as exc:
        raise UrlRejected("redirected to a link that is not a valid web address") from exc


def _is_tls_error(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


# --- URLs connected to later (webhook receivers, the LiveKit server) ---------------------------


def public_url_check(
    url: str,
    *,
    schemes: tuple[str, ...] = ("https",),
    local_schemes: tuple[str, ...] = ("http", "https"),
    purpose: str = "webhooks only go to the public internet",
    local_allowed: bool | None = None,
) -> IPAddress | None:
    """The public address to connect to for `url`, by the same rules as media links: one of
    `schemes`, a public host (every resolved address checked). ApplicationError (field "url")
    says why not. Where local addresses are allowed (`local_allowed`, by default
    WEBHOOK_ALLOW_LOCAL) `local_schemes` and local addresses pass, and None means "connect by
    name". Used for webhook receivers and the LiveKit URL."""
    if local_allowed is None:
        local_allowed = settings.WEBHOOK_ALLOW_LOCAL
    try:
        target = httpx.URL(url.strip())
        host = target.raw_host.decode("ascii").rstrip(".").lower()
    except (httpx.InvalidURL, UnicodeError):
        raise ApplicationError("This is not a valid web address.", field="url") from None
    if local_allowed and target.scheme in local_schemes and host:
        return None
    if target.scheme not in schemes:
        starts = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ApplicationError(f"The URL must start with {starts}.", field="url")
    if not host:
        raise ApplicationError("The URL has no host name.", field="url")
    if host_is_internal(host):
        raise ApplicationError(
            f"The URL points to an internal host name; {purpose}.",
            field="url",
        )
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            answers = host_resolve(host, target.port or 443)
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in answers]
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise ApplicationError("The URL's host name could not be found.", field="url") from None
    for address in addresses:
        if not address_is_public(address):
            raise ApplicationError(
                f"The URL points to a private or internal network address ({address}); {purpose}.",
                field="url",
            )
    return addresses[0]


def pinned_post(
    url: str,
    *,
    address: IPAddress | None,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
) -> httpx.Response:
    """POST `content` to `url`, connecting to `address` (what `public_url_check` returned just
    before; see `pinned`). No proxy from the environment (it would bypass the address checks),
    no redirect followed. httpx's errors are the caller's to report."""
    target, pin_headers, extensions = pinned(httpx.URL(url), address)
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
        request = client.build_request(
            "POST", target, content=content, headers=headers | pin_headers, extensions=extensions
        )
        return client.send(request)
