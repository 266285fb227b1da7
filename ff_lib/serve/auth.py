"""Who may call: loopback only without a key; with `--api-key`, every request shows it
(`Authorization: Bearer KEY`), compared in constant time."""

import hmac
import ipaddress
import socket

from ff_lib.errors import InvalidInput
from ff_lib.serve.errors import APIError


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) only ever means this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return _name_is_loopback(host)


def _name_is_loopback(host: str) -> bool:
    """A host name: loopback when every address it resolves to is."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key (InvalidInput says what to do)."""
    if api_key is not None and not api_key.strip():
        raise InvalidInput("--api-key is empty: give a secret key, or leave --api-key out.")
    if not is_loopback(host) and not api_key:
        raise InvalidInput(
            f"--host {host} is reachable from other machines: add --api-key KEY (clients send "
            "`Authorization: Bearer KEY`), or keep the default --host 127.0.0.1."
        )


def check_key(authorization: str | None, api_key: str | None) -> None:
    """APIError 401 unless the request's bearer token is the key (when there is one)."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(
            401,
            "This server needs an API key: send `Authorization: Bearer KEY`.",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
