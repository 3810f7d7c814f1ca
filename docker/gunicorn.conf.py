"""gunicorn settings for the web role (docker/compose.yaml, or `gunicorn -c docker/gunicorn.conf.py
portal.wsgi` on a host). Each is overridable through the environment (docker/.env.example).

Graceful shutdown: on SIGTERM gunicorn stops accepting, lets in-flight requests finish for up to
GUNICORN_GRACEFUL_TIMEOUT seconds, then stops; compose's stop_grace_period for web is longer.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# A request running longer than this is killed (and its worker replaced). The longest legitimate
# requests are media uploads with pre-flight checks (bitHuman calls time out at 15 s, 3 retries).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "90"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then (bounded memory growth), at staggered moments.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on a container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# The portal logs each request itself (JSON, with its request id): no separate access log.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Trust X-Forwarded-* from the reverse proxy in front (set to its address, or * inside a
# private network where only the proxy reaches gunicorn).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
