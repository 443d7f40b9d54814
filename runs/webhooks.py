"""Run webhooks: the URL policy checked at admission, the payload, and signed delivery.

Policy comes from two places: ``AGENT_SERVER["WEBHOOK_ALLOW_PRIVATE"]`` (operator switch for
internal targets) and the ``webhooks`` block of the config file (``url`` policy, ``headers``,
``env_prefix``, ``allowed_fields``). Delivery re-checks the resolved address and connects to
exactly that address, so a DNS answer that changed since admission cannot reach a private host.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from agentserver.conf import server_settings
from agentserver.config import ConfigError, get_config
from agentserver.renderers import dumps

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Agentserver-Signature"
DEFAULT_ENV_PREFIX = "LG_WEBHOOK_"
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 10.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance-metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba): refused even when
# private targets are allowed, as they hand out cloud credentials.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ENV_TEMPLATE = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class WebhookRejected(Exception):
    """The webhook URL breaks the policy; the message starts with "Webhook" and is safe to show."""


class _Unresolvable(WebhookRejected):
    """DNS gave no answer: final at admission, worth a retry at delivery."""


@dataclass(frozen=True)
class WebhookPolicy:
    allow_private: bool = False
    allow_loopback: bool = False
    require_https: bool = False
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_url_length: int = 4096

    @classmethod
    def current(cls) -> WebhookPolicy:
        """Built from ``WEBHOOK_ALLOW_PRIVATE`` and the config's ``webhooks.url`` block."""
        allow_private = bool(server_settings.WEBHOOK_ALLOW_PRIVATE)
        block = _webhooks_section().get("url")
        if block is None:
            return cls(allow_private=allow_private, allow_loopback=allow_private)
        if not isinstance(block, dict):
            raise ConfigError("webhooks.url in the config must be an object")
        max_length = block.get("max_url_length", 4096)
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
            raise ConfigError("webhooks.url.max_url_length must be a positive integer")
        return cls(
            allow_private=allow_private,
            allow_loopback=allow_private or block.get("disable_loopback", True) is False,
            # The reference requires https as soon as a url block exists, unless told otherwise.
            require_https=bool(block.get("require_https", True)),
            allowed_domains=tuple(d.lower().rstrip(".") for d in _list_of(block, "allowed_domains", str)),
            allowed_ports=_list_of(block, "allowed_ports", int),
            max_url_length=max_length,
        )

    def allows_domain(self, host: str) -> bool:
        if not self.allowed_domains:
            return True
        return any(
            host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern
            for pattern in self.allowed_domains
        )


def validate_webhook_url(url: str) -> None:
    """Raise ``WebhookRejected`` unless ``url`` may receive webhooks under the current policy.

    Resolves the host (no connection is made) and refuses it if any address is not allowed.
    """
    policy = WebhookPolicy.current()
    host, port = _check_url(url, policy)
    _resolve_allowed(host, port, policy)


def webhook_payload(
    run: dict[str, Any],
    *,
    status: str,
    values: Any,
    error: dict[str, Any] | None,
    started_at: Any,
    ended_at: Any,
) -> dict[str, Any]:
    """The JSON body of a webhook: Run fields plus outcome, restricted by ``webhooks.allowed_fields``."""
    payload = {
        **run,
        "status": status,
        "run_started_at": _iso(started_at),
        "run_ended_at": _iso(ended_at),
        "webhook_sent_at": datetime.now(UTC).isoformat(),
        "values": values,
    }
    if error is not None:
        payload["error"] = error
    allowed = _webhooks_section().get("allowed_fields")
    if allowed:
        payload = {key: value for key, value in payload.items() if key in set(allowed)}
    return payload


def deliver_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    attempts: int | None = None,
    backoff: float = 0.5,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> bool:
    """POST ``payload`` as JSON to ``url``; True once a 2xx answer came back.

    Connection errors, timeouts, 429 and 5xx are retried after ``backoff``, doubling each time
    (capped at 10 s), up to ``attempts`` (default ``WEBHOOK_MAX_ATTEMPTS``). Other answers
    (3xx: redirects are not followed, 4xx) and policy refusals end delivery with False.

    Signing: when ``WEBHOOK_SECRET`` is set, each attempt carries
    ``X-Agentserver-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
    HMAC-SHA256(secret, ``"<t>." + raw body bytes``). Receivers recompute it over the raw body,
    compare in constant time and reject stale ``t`` to stop replays.
    """
    body = dumps(payload)
    headers = {**_static_headers(), "Content-Type": "application/json"}
    max_attempts = attempts or server_settings.WEBHOOK_MAX_ATTEMPTS
    target = _display(url)
    client_timeout = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_SECONDS)
    # trust_env=False: a proxy would defeat the pinning to the checked address.
    with httpx.Client(timeout=client_timeout, follow_redirects=False, trust_env=False) as client:
        for attempt in range(1, max_attempts + 1):
            outcome = _send_once(client, url, body, headers, target)
            if outcome is not None:
                return outcome
            if attempt < max_attempts:
                time.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
    logger.warning("Webhook to %s failed after %d attempts", target, max_attempts)
    return False


def _send_once(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], target: str
) -> bool | None:
    """One attempt: True delivered, False give up, None retry."""
    try:
        response = _post_pinned(client, url, body, headers)
    except _Unresolvable as exc:
        logger.warning("%s (retrying)", exc)
        return None
    except WebhookRejected as exc:
        logger.warning("Webhook to %s refused at delivery: %s", target, exc)
        return False
    except httpx.TransportError as exc:
        logger.warning("Webhook to %s failed: %s", target, type(exc).__name__)
        return None
    if response.is_success:
        logger.info("Webhook delivered to %s", target)
        return True
    if response.status_code == 429 or response.status_code >= 500:
        logger.warning("Webhook to %s answered %d (retrying)", target, response.status_code)
        return None
    logger.warning("Webhook to %s answered %d; not retried", target, response.status_code)
    return False


def _post_pinned(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the host's addresses, each checked just now, until one accepts the connection.

    The URL is rewritten to the address itself while the Host header and TLS SNI (hence the
    certificate check) keep naming the original host.
    """
    policy = WebhookPolicy.current()
    host, port = _check_url(url, policy)
    addresses = _resolve_allowed(host, port, policy)
    original = httpx.URL(url)
    signed = {**headers, **_signature_headers(body), "Host": original.netloc.decode("ascii")}

    def post(address: IPAddress) -> httpx.Response:
        request = client.build_request(
            "POST",
            original.copy_with(host=str(address)),
            content=body,
            headers=signed,
            extensions={"sni_hostname": original.host},
        )
        response = client.send(request, stream=True)
        response.close()  # the receiver's body is of no interest
        return response

    for address in addresses[:-1]:
        try:
            return post(address)
        except httpx.ConnectError:
            continue
    return post(addresses[-1])


def _check_url(url: str, policy: WebhookPolicy) -> tuple[str, int]:
    """Static checks on the URL text; returns the lowercased host and the effective port."""
    if not isinstance(url, str) or not url:
        raise WebhookRejected("Webhook URL must be a non-empty string")
    if len(url) > policy.max_url_length:
        raise WebhookRejected(f"Webhook URL too long (max {policy.max_url_length} characters)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.netloc:
        raise WebhookRejected("Webhook URL must be an absolute http(s) URL")
    if policy.require_https and scheme != "https":
        raise WebhookRejected("Webhook must use https")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookRejected("Webhook URL has no host")
    port = _port(parts, scheme)
    if policy.allowed_ports and port not in policy.allowed_ports:
        raise WebhookRejected(f"Webhook port {port} not allowed")
    if not policy.allows_domain(host):
        raise WebhookRejected("Webhook domain not allowed")
    return host, port


def _port(parts: SplitResult, scheme: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise WebhookRejected("Webhook URL has an invalid port") from None
    return port if port is not None else (443 if scheme == "https" else 80)


def _resolve_allowed(host: str, port: int, policy: WebhookPolicy) -> list[IPAddress]:
    """Every address ``host`` resolves to, each checked; one bad address refuses the host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _Unresolvable(f"Webhook host {host!r} could not be resolved") from None
    # dict.fromkeys: getaddrinfo repeats addresses; keep its preference order without duplicates.
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    for address in addresses:
        _check_address(address, policy)
    if not addresses:
        raise _Unresolvable(f"Webhook host {host!r} could not be resolved")
    return addresses


def _check_address(address: IPAddress, policy: WebhookPolicy) -> None:
    address = _embedded_ipv4(address) or address
    if address in _METADATA_ADDRESSES:
        raise WebhookRejected("Webhook host blocked: cloud metadata address")
    if address.is_loopback:
        if not policy.allow_loopback:
            raise WebhookRejected("Webhook host blocked: loopback address")
    elif address.is_multicast or address.is_unspecified or address.is_reserved:
        raise WebhookRejected("Webhook host blocked: multicast, reserved or unspecified address")
    elif not address.is_global and not policy.allow_private:
        raise WebhookRejected("Webhook host blocked: private or link-local address")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _signature_headers(body: bytes) -> dict[str, str]:
    secret = server_settings.WEBHOOK_SECRET
    if not secret:
        return {}
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADER: f"t={timestamp},v1={digest}"}


def _static_headers() -> dict[str, str]:
    """``webhooks.headers`` with ``${{ env.VAR }}`` filled in for variables under the env prefix.

    A header naming any other (or an unset) variable is dropped rather than sent half-filled.
    """
    section = _webhooks_section()
    prefix = section.get("env_prefix") or DEFAULT_ENV_PREFIX
    headers = {}
    for name, template in (section.get("headers") or {}).items():
        value = _render_env(str(template), prefix)
        if value is None:
            logger.warning(
                "Webhook header %s dropped: it names an unset variable or one outside %s*", name, prefix
            )
            continue
        headers[str(name)] = value
    return headers


def _render_env(template: str, prefix: str) -> str | None:
    refused = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal refused
        name = match.group(1)
        if name.startswith(prefix) and name in os.environ:
            return os.environ[name]
        refused = True
        return ""

    value = _ENV_TEMPLATE.sub(substitute, template)
    return None if refused else value


def _webhooks_section() -> dict[str, Any]:
    return get_config().section("webhooks")


def _list_of(block: dict[str, Any], key: str, kind: type) -> tuple[Any, ...]:
    value = block.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"webhooks.url.{key} must be a list of {kind.__name__}")
    return tuple(value)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _display(url: str) -> str:
    """Scheme, host and port only: paths and query strings may carry tokens."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<invalid url>"
