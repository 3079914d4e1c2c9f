"""SMS through Twilio with the twilio SDK.

``TWILIO_API_URL`` other than https://api.twilio.com (a local fake, Prism) is honoured by an
HTTP client that rewrites the scheme and host of every request URL; the SDK builds the paths.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from notifications.config import NotifierConfig
from notifications.masking import mask_phone, scrub
from notifications.transports import (
    Gate,
    Message,
    OutcomeUnknown,
    TransportError,
    pass_gate,
    secret_value,
)

log = logging.getLogger(__name__)
# The SDK logs every request and answer at INFO, headers included, several lines per SMS;
# examdesk logs one line per send itself (below), with the number masked.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

TWILIO_API = "https://api.twilio.com"
# A notice that has waited this long in Twilio's queue is stale: Twilio drops it.
VALIDITY_SECONDS = 30 * 60
STATUS_PATH = "/twilio/status"
# The callback URL of each message names its delivery: the row exists before the request goes
# out, so a callback that comes before the send's MessageSid is recorded still finds it.
DELIVERY_PARAM = "delivery"
# The SDK logs every request's parameters at INFO, and those of a look-up carry the number.
_SDK_LOG = logging.getLogger(__name__ + ".http")
_SDK_LOG.setLevel(logging.WARNING)
# A run of 7+ digits, spaces, dots or dashes allowed between them: a phone number as Twilio's
# error texts quote it ("'To' and 'From' number cannot be the same: +4741234567").

# Errors that no retry can fix (Twilio error dictionary).
PERMANENT_CODES = {
    21211: "not a valid phone number",
    21408: "SMS to this region is not enabled",
    21606: "the sender number cannot send SMS",
    21610: "the candidate has opted out of SMS (STOP)",
    21612: "Twilio cannot route to this number",
    21614: "not a mobile number",
    21617: "the message is too long",
    30003: "the phone is unreachable",
    30004: "the message was blocked",
    30005: "unknown or inactive number",
    30006: "a landline or unreachable carrier",
    30007: "filtered as spam by the carrier",
}


class _Wire(threading.local):
    gate: Gate | None = None  # the gate of the next request this thread makes


class GatedAdapter(HTTPAdapter):
    """Holds a request at its thread's gate once the SDK has built it, just before urllib3
    writes it out: an SMS leaves at its send slot, not whenever the SDK is done."""

    def __init__(self, wire: _Wire, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wire = wire

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any):  # type: ignore[override]
        gate, self.wire.gate = self.wire.gate, None
        pass_gate(gate)
        return super().send(request, *args, **kwargs)


class PooledHttpClient(TwilioHttpClient):
    """Keeps as many connections open as requests are in flight (default pools hold 10), and
    holds each at its thread's gate (``wire``), if any.

    requests reads the proxy and CA-bundle variables (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``…) from the environment at every request, in the process that also
    answers Slack. This client talks to one host, ``api_url``'s, so they are read once, here,
    by requests' own rules.
    """

    def __init__(self, api_url: str, *, timeout: float, pool_size: int) -> None:
        super().__init__(timeout=timeout, logger=_SDK_LOG)
        self.wire = _Wire()
        adapter = GatedAdapter(self.wire, pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        assert self.session is not None
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        found = self.session.merge_environment_settings(api_url, {}, None, None, None)
        self.proxy = found["proxies"] or None
        self.session.verify = found["verify"]
        self.session.trust_env = False


class RewritingHttpClient(PooledHttpClient):
    """Sends every request to ``base_url`` instead of the host the SDK chose."""

    def __init__(self, base_url: str, *, timeout: float, pool_size: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"TWILIO_API_URL must be an http(s) URL, not {base_url!r}")
        super().__init__(base_url, timeout=timeout, pool_size=pool_size)
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        parts = urlsplit(url)
        url = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, url, *args, **kwargs)


def http_client(api_url: str, *, timeout: float, pool_size: int) -> PooledHttpClient:
    if api_url.rstrip("/") == TWILIO_API:
        return PooledHttpClient(api_url, timeout=timeout, pool_size=pool_size)
    return RewritingHttpClient(api_url, timeout=timeout, pool_size=pool_size)


def _reached_server(error: requests.RequestException) -> bool:
    """False only when the connection was never made, so the request surely went nowhere."""
    if isinstance(error, requests.ConnectTimeout):
        return False
    if isinstance(error, requests.ConnectionError):
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return False
    return True


def status_callback_url(public_url: str, delivery_id: int) -> str:
    return f"{public_url.rstrip('/')}{STATUS_PATH}?{DELIVERY_PARAM}={delivery_id}"


def classify(status: int, code: int | None, text: str, *, to: str) -> TransportError:
    """Twilio's refusal as a transport error: only 429 and 5xx are worth trying again.

    Twilio's texts may quote the number (21266, 21211): it is masked, since the error goes
    to the delivery record, the logs and Slack.
    """
    label = str(code or status)
    text = scrub(text, address=to)
    if status == 429 or status >= 500:
        return TransportError(f"Twilio answered {status}: {text}", permanent=False, code=label)
    reason = PERMANENT_CODES.get(code or 0) or text
    return TransportError(f"{reason} (Twilio {label})", permanent=True, code=label)


class TwilioTransport:
    channel = "sms"
    can_look_up = True
    logs_only = False

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        public_url: str,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        api_url: str = TWILIO_API,
        timeout: float = 10,
        pool_size: int = 16,
    ) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID to send SMS")
        http = http_client(api_url, timeout=timeout, pool_size=pool_size)
        self.wire = http.wire
        self.client = Client(account_sid, auth_token, http_client=http)
        # The SDK imports its API modules when they are first used, which takes a moment:
        # here, not in the way of the first SMS (and of those queued behind it).
        self.client.messages  # noqa: B018
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.public_url = public_url

    @classmethod
    def from_settings(
        cls, settings: NotifierConfig, *, timeout: float, pool_size: int
    ) -> TwilioTransport:
        token = settings.twilio_auth_token
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=secret_value(token),
            public_url=settings.public_url,
            sender=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_url=settings.twilio_api_url,
            timeout=timeout,
            pool_size=pool_size,
        )

    def send(self, message: Message, gate: Gate | None = None) -> str:
        to = mask_phone(message.address)
        self.wire.gate = gate
        try:
            sid = self._create(message)
        except TransportError as error:
            log.info("SMS to %s not accepted: %s", to, error.code)
            raise
        except OutcomeUnknown:
            log.info("SMS to %s: no answer from Twilio, checked before any resend", to)
            raise
        finally:
            self.wire.gate = None
        log.info("SMS to %s accepted: %s", to, sid)
        return sid

    def _create(self, message: Message) -> str:
        options: dict[str, str] = {}
        if self.messaging_service_sid:
            options["messaging_service_sid"] = self.messaging_service_sid
        if self.sender:
            options["from_"] = self.sender
        if message.delivery_id is not None:
            # Only a notice's delivery has a row for the callbacks' statuses.
            options["status_callback"] = status_callback_url(self.public_url, message.delivery_id)
        try:
            created = self.client.messages.create(
                to=message.address,
                body=message.body,
                validity_period=VALIDITY_SECONDS,
                **options,
            )
        except TwilioRestException as error:
            raise classify(error.status, error.code, str(error.msg), to=message.address) from error
        except TwilioServiceException as error:
            text = f"{error.title}: {error.detail or ''}"
            raise classify(error.status, error.code, text, to=message.address) from error
        except requests.RequestException as error:
            if _reached_server(error):
                raise OutcomeUnknown(scrub(f"no answer from Twilio: {error}")) from error
            raise TransportError(
                scrub(f"cannot reach Twilio: {error}"), permanent=False, code="connect"
            ) from error
        return created.sid

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        # Clocks differ a little between us and Twilio.
        earliest = since - timedelta(minutes=5)
        for sent in self.client.messages.list(to=message.address, limit=100):
            created = sent.date_created
            if sent.body == message.body and (created is None or created >= earliest):
                return sent.sid
        return None
