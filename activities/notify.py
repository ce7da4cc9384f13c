"""Telling people: phase changes and results to SNS and to a Slack-compatible webhook.

The webhook URL is a secret: the config names the environment variable or the AWS Secrets
Manager secret that holds it, and it is read here. A failed notification fails this
activity, never the failover: the workflow logs and counts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsCaller
from activities.secrets import read_secret_async
from failover.models import Notification, NotificationSent

WEBHOOK_TIMEOUT_SECONDS = 5.0


class NotifyActivities:
    def __init__(
        self,
        *,
        sns_factory: Callable[[], Any],
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sns = AwsCaller(sns_factory)
        self.http_transport = http_transport

    @activity.defn(name="notify")
    async def notify(self, request: Notification) -> NotificationSent:
        sent = NotificationSent()
        if request.sns_topic_arn is not None:
            await self.sns.call(
                "Publish",
                TopicArn=request.sns_topic_arn,
                Subject=f"failover {request.cluster}: {request.event}"[:100],
                Message=request.text,
            )
            sent.channels.append("sns")
        if request.webhook_url_env is not None or request.webhook_url_secret is not None:
            await self._post_webhook(request)
            sent.channels.append("webhook")
        return sent

    async def _post_webhook(self, request: Notification) -> None:
        secret = request.webhook_url_secret
        # The URL is a secret: messages name where it comes from, never the address.
        name = secret.describe() if secret is not None else request.webhook_url_env
        url = await read_secret_async(request.webhook_url_env, secret, "webhook URL")
        async with httpx.AsyncClient(
            timeout=WEBHOOK_TIMEOUT_SECONDS, transport=self.http_transport
        ) as client:
            try:
                answer = await client.post(url, json={"text": request.text})
            except httpx.HTTPError as exc:
                raise ApplicationError(
                    f"webhook ({name}) unreachable: {type(exc).__name__}"
                ) from None
        if answer.status_code >= 400:
            raise ApplicationError(
                f"webhook ({name}) answered HTTP {answer.status_code}",
                non_retryable=400 <= answer.status_code < 500 and answer.status_code != 429,
            )
