"""The Celery app: reads CELERY_* Django settings and discovers each app's tasks.py.

Two adjustments keep a worker alive and prompt through a broker outage (fault case 3):

- `RedisTransport` (selected in settings for `redis://` brokers): kombu 5.7.0's Redis channel,
  once its connection was collected after the broker dropped, builds a new client from a
  transport that no longer has one and raises AttributeError, which Celery treats as fatal
  ("Unrecoverable error ... _connparams", from restoring or acking unacknowledged messages):
  the worker exits. Here that is a connection error, which Celery handles by reconnecting.
- `BrokerConnection`: while the broker is unreachable, workers and beat retry every 1-2 s
  (kombu backs off to 30 s), so work resumes within seconds of the broker's return.
"""

from __future__ import annotations

import os
from typing import Any

import kombu
import redis
from celery import Celery
from celery.app.amqp import AMQP
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


class RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("The broker connection of this channel was closed.")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


class BrokerConnection(kombu.Connection):
    def ensure_connection(
        self,
        errback: Any = None,
        max_retries: int | None = None,
        interval_start: float = 1,
        interval_step: float = 1,
        interval_max: float = 2,
        **kwargs: Any,
    ) -> Any:
        return super().ensure_connection(
            errback, max_retries, interval_start, interval_step, interval_max, **kwargs
        )


class PortalAMQP(AMQP):
    Connection = BrokerConnection


app = Celery("portal", amqp=PortalAMQP)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
