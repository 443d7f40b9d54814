"""Webhook URL policy, payload and delivery, against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from runs.webhooks import (
    SIGNATURE_HEADER,
    WebhookPolicy,
    WebhookRejected,
    deliver_webhook,
    validate_webhook_url,
    webhook_payload,
)
from tests.receiver import Receiver

PUBLIC = "93.184.216.34"  # a public address: validating an IP literal needs no DNS and no connection
FAST = 0.01  # backoff seconds: retries stay quick in tests


@pytest.fixture
def configure(settings: Any, tmp_path: Path) -> Callable[..., None]:
    """Set AGENT_SERVER knobs and, optionally, a config file with a ``webhooks`` block."""
    written = iter(range(1_000))

    def apply(webhooks: dict[str, Any] | None = None, **knobs: Any) -> None:
        if webhooks is not None:
            # A new file each time: parsed configs are cached per path.
            path = tmp_path / f"langgraph-{next(written)}.json"
            path.write_text(json.dumps({"graphs": {"echo": "./graphs.py:echo"}, "webhooks": webhooks}))
            knobs["CONFIG"] = str(path)
        settings.AGENT_SERVER = knobs

    return apply


@pytest.fixture
def private_ok(configure: Callable[..., None]) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True)


def rejected(url: str) -> str:
    with pytest.raises(WebhookRejected) as info:
        validate_webhook_url(url)
    message = str(info.value)
    assert message.startswith("Webhook")
    return message


# Admission: URL policy


@pytest.mark.parametrize(
    "url", [f"https://{PUBLIC}/hook", f"http://{PUBLIC}:8080/a?b=c", f"HTTPS://{PUBLIC}"]
)
def test_accepts_public_address(url: str) -> None:
    validate_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10/hook",
        "http://localhost/hook",
        "http://2130706433/hook",  # 127.0.0.1 in decimal
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.10.1/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
    ],
)
def test_refuses_internal_addresses_by_default(url: str) -> None:
    assert "blocked" in rejected(url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/hook", "http://[::1]/hook", "http://10.1.2.3/", "http://[::ffff:192.168.0.1]/"],
)
def test_allow_private_admits_internal_addresses(configure: Callable[..., None], url: str) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True)
    validate_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/"]
)
def test_metadata_refused_even_when_private_allowed(configure: Callable[..., None], url: str) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True)
    assert "metadata" in rejected(url)


def test_disable_loopback_false_admits_loopback_only(configure: Callable[..., None]) -> None:
    configure({"url": {"disable_loopback": False, "require_https": False}})
    validate_webhook_url("http://127.0.0.1:8000/hook")
    assert "private" in rejected("http://10.0.0.1/hook")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/threads/x/runs",
        "hooks/x",
        "//93.184.216.34/hook",
        "http:///hook",
        "",
    ],
)
def test_refuses_non_http_and_relative_urls(url: str) -> None:
    rejected(url)


def test_refuses_invalid_port() -> None:
    assert "port" in rejected(f"http://{PUBLIC}:99999/")


def test_url_block_requires_https_unless_turned_off(configure: Callable[..., None]) -> None:
    configure({"url": {}})
    assert rejected(f"http://{PUBLIC}/hook") == "Webhook must use https"
    validate_webhook_url(f"https://{PUBLIC}/hook")
    configure({"url": {"require_https": False}})
    validate_webhook_url(f"http://{PUBLIC}/hook")


def test_allowed_domains_refuse_other_hosts(configure: Callable[..., None]) -> None:
    configure({"url": {"allowed_domains": ["*.example.com", PUBLIC]}})
    validate_webhook_url(f"https://{PUBLIC}/hook")
    for url in [
        "https://evil.test/",
        "https://example.com.evil.test/",
        "https://notexample.com/",
        "https://10.0.0.1/",
    ]:
        assert rejected(url) == "Webhook domain not allowed"


def test_wildcard_domain_matches_subdomains_only() -> None:
    policy = WebhookPolicy(allowed_domains=("*.example.com", "hooks.partner.test"))
    assert policy.allows_domain("a.example.com")
    assert policy.allows_domain("deep.a.example.com")
    assert policy.allows_domain("hooks.partner.test")
    assert not policy.allows_domain("example.com")
    assert not policy.allows_domain("badexample.com")
    assert not policy.allows_domain("x.hooks.partner.test")


def test_allowed_ports(configure: Callable[..., None]) -> None:
    configure({"url": {"allowed_ports": [443, 8443], "require_https": False}})
    validate_webhook_url(f"https://{PUBLIC}/hook")
    validate_webhook_url(f"https://{PUBLIC}:8443/hook")
    assert rejected(f"https://{PUBLIC}:9443/hook") == "Webhook port 9443 not allowed"
    assert rejected(f"http://{PUBLIC}/hook") == "Webhook port 80 not allowed"


def test_max_url_length(configure: Callable[..., None]) -> None:
    base = f"https://{PUBLIC}/"
    validate_webhook_url(base + "a" * (4096 - len(base)))
    assert "too long" in rejected(base + "a" * (4097 - len(base)))
    configure({"url": {"max_url_length": 40}})
    assert "too long" in rejected(base + "a" * 30)


# Payload


RUN = {
    "run_id": "r1",
    "thread_id": "t1",
    "assistant_id": "a1",
    "metadata": {},
    "multitask_strategy": "enqueue",
}


def test_payload_carries_run_fields_and_outcome() -> None:
    payload = webhook_payload(
        RUN,
        status="success",
        values={"n": 1},
        error=None,
        started_at="2025-01-01T00:00:00+00:00",
        ended_at=None,
    )
    assert payload.items() >= RUN.items()
    assert payload["status"] == "success" and payload["values"] == {"n": 1}
    assert payload["run_started_at"] == "2025-01-01T00:00:00+00:00"
    assert "webhook_sent_at" in payload and "error" not in payload
    failed = webhook_payload(
        RUN,
        status="error",
        values=None,
        error={"error": "ValueError", "message": "x"},
        started_at=None,
        ended_at=None,
    )
    assert failed["error"] == {"error": "ValueError", "message": "x"}


def test_allowed_fields_restrict_payload(configure: Callable[..., None]) -> None:
    configure({"allowed_fields": ["run_id", "status", "values"]})
    payload = webhook_payload(RUN, status="success", values=[1], error=None, started_at=None, ended_at=None)
    assert payload == {"run_id": "r1", "status": "success", "values": [1]}


# Delivery


def test_delivers_json_payload_once(receiver: Receiver, private_ok: None) -> None:
    assert deliver_webhook(receiver.url, {"run_id": "r1", "values": {"x": [1, 2]}}, backoff=FAST)
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert orjson.loads(request.body) == {"run_id": "r1", "values": {"x": [1, 2]}}
    assert SIGNATURE_HEADER not in request.headers


def test_keeps_host_header_when_pinned_to_address(receiver: Receiver, private_ok: None) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost")
    assert deliver_webhook(url, {"ok": True}, backoff=FAST)
    assert receiver.requests[-1].headers["Host"] == url.split("/")[2]


def test_retries_server_errors_then_succeeds(receiver: Receiver, private_ok: None) -> None:
    receiver.answer(500, 503, (429, {"Retry-After": "0"}, 0.0), 200)
    assert deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    assert len(receiver.requests) == 4


def test_gives_up_after_max_attempts(receiver: Receiver, configure: Callable[..., None]) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_MAX_ATTEMPTS=3)
    receiver.answer(*[500] * 10)
    assert not deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    assert len(receiver.requests) == 3
    assert not deliver_webhook(receiver.url, {"n": 1}, attempts=2, backoff=FAST)
    assert len(receiver.requests) == 5


def test_client_error_not_retried(receiver: Receiver, private_ok: None) -> None:
    receiver.answer(404)
    assert not deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    assert len(receiver.requests) == 1


def test_redirect_not_followed(receiver: Receiver, private_ok: None) -> None:
    receiver.answer((302, {"Location": receiver.url + "/elsewhere"}, 0.0))
    assert not deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_slow_receiver_times_out_and_is_retried(receiver: Receiver, private_ok: None) -> None:
    receiver.answer((200, {}, 1.0))
    started = time.monotonic()
    assert deliver_webhook(receiver.url, {"n": 1}, timeout=0.2, backoff=FAST)
    assert len(receiver.requests) == 2
    assert time.monotonic() - started < 1.0


def test_connection_refused_retried_then_gives_up(private_ok: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not deliver_webhook(f"http://127.0.0.1:{port}/hook", {"n": 1}, attempts=3, backoff=FAST)


def test_policy_rechecked_at_delivery(receiver: Receiver, configure: Callable[..., None]) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True)
    validate_webhook_url(receiver.url)
    configure(WEBHOOK_ALLOW_PRIVATE=False)
    assert not deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    assert receiver.requests == []


def test_signature_verifies_with_secret(
    receiver: Receiver, configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    configure(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_SECRET="s3cret-key")
    receiver.answer(500, 200)
    assert deliver_webhook(receiver.url, {"run_id": "r1"}, backoff=FAST)
    for request in receiver.requests:
        fields = dict(part.split("=", 1) for part in request.headers[SIGNATURE_HEADER].split(","))
        assert abs(int(fields["t"]) - time.time()) < 60
        expected = hmac.new(b"s3cret-key", fields["t"].encode() + b"." + request.body, hashlib.sha256)
        assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    assert "s3cret-key" not in caplog.text


def test_header_templates_only_read_prefixed_env(
    receiver: Receiver,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LG_WEBHOOK_TOKEN", "tok-123")
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    headers = {
        "Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}",
        "X-Leak": "${{ env.DATABASE_PASSWORD }}",
        "X-Unset": "${{env.LG_WEBHOOK_MISSING}}",
        "X-Static": "yes",
    }
    configure({"headers": headers}, WEBHOOK_ALLOW_PRIVATE=True)
    assert deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["X-Static"] == "yes"
    assert "X-Leak" not in request.headers and "X-Unset" not in request.headers
    assert "hunter2" not in str(request.headers) and "hunter2" not in caplog.text
    assert "tok-123" not in caplog.text


def test_custom_env_prefix(
    receiver: Receiver, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_HOOK_KEY", "k1")
    monkeypatch.setenv("LG_WEBHOOK_KEY", "k2")
    headers = {"X-Acme": "${{ env.ACME_HOOK_KEY }}", "X-Default": "${{ env.LG_WEBHOOK_KEY }}"}
    configure({"env_prefix": "ACME_HOOK_", "headers": headers}, WEBHOOK_ALLOW_PRIVATE=True)
    assert deliver_webhook(receiver.url, {"n": 1}, backoff=FAST)
    [request] = receiver.requests
    assert request.headers["X-Acme"] == "k1"
    assert "X-Default" not in request.headers
