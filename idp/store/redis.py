"""Redis implementation of :class:`idp.store.base.Store` (production backend).

Failure model: every Redis or socket error becomes :class:`StoreUnavailable` (callers
fail closed), except two programming errors that mirror :class:`MemoryStore`:
``WRONGTYPE`` -> :class:`TypeError` and a non-integer ``incr`` -> :class:`ValueError`.
Timeouts are short so an outage fails fast instead of hanging requests. The client's
connection pool reconnects by itself once Redis is back; nothing here holds on to a
connection between calls (``wait_for`` opens and closes its own pub/sub connection).

The pool already replaces connections found dead at checkout (Redis restart, idle
timeout). On top of that, a command that fails with a *connection* error is retried once,
immediately, on a fresh connection (redis-py's default is 10 retries with backoff, which
would stretch an outage to seconds per call). A retried write can in rare cases apply
twice (the reply was lost) -- for every caller here that errs on the closed side
(a counter counts one extra attempt, ``take``/``set_if_absent`` report "not yours").
Timeouts are not retried.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from idp.store.base import StoreUnavailable, check_timeout, check_ttl, check_value

# INCR, and give the key its window only when this increment created it. The TTL == -1
# branch repairs a counter that somehow lost its expiry (it would otherwise lock an
# account out forever); it never extends a running window.
_INCR_WITH_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return n
"""

HEALTH_CHECK_INTERVAL = 5  # seconds a pooled connection may idle before a PING re-checks it


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except ResponseError as exc:
        message = str(exc)
        if "WRONGTYPE" in message:
            raise TypeError(message) from exc
        if "not an integer" in message or "overflow" in message:
            raise ValueError(message) from exc
        raise StoreUnavailable(f"redis error: {message}") from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


class RedisStore:
    """A :class:`~idp.store.base.Store` on Redis (>= 6.2, for ``GETDEL``).

    ``url`` is a redis-py URL (``redis://[:password@]host:port/db``, ``rediss://`` for
    TLS). ``socket_timeout`` bounds both connecting and each command.
    """

    #: Seen by every process and instance that uses the same Redis.
    shared = True

    def __init__(self, url: str, prefix: str = "", *, socket_timeout: float = 1.0) -> None:
        self._prefix = prefix
        self._client = redis.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._incr_script = self._client.register_script(_INCR_WITH_WINDOW)

    def _k(self, key: str) -> str:
        return self._prefix + key

    def close(self) -> None:
        """Disconnect all pooled connections (the store stays usable; it reconnects)."""
        with contextlib.suppress(RedisError, OSError):
            self._client.close()

    # -- Store -----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with _translate():
            return self._client.get(self._k(key))

    def set(self, key: str, value: bytes, ttl: int) -> None:
        check_value(value)
        check_ttl(ttl)
        with _translate():
            self._client.set(self._k(key), value, ex=ttl)

    def set_if_absent(self, key: str, value: bytes, ttl: int) -> bool:
        check_value(value)
        check_ttl(ttl)
        with _translate():
            return bool(self._client.set(self._k(key), value, ex=ttl, nx=True))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with _translate():
            return int(self._client.delete(*(self._k(k) for k in keys)))

    def take(self, key: str) -> bytes | None:
        with _translate():
            return self._client.getdel(self._k(key))

    def incr(self, key: str, ttl: int) -> int:
        check_ttl(ttl)
        with _translate():
            return int(self._incr_script(keys=[self._k(key)], args=[ttl]))

    def ttl(self, key: str) -> int | None:
        with _translate():
            ms = int(self._client.pttl(self._k(key)))
        if ms < 0:  # -2: missing, -1: no expiry
            return None
        return max(1, math.ceil(ms / 1000))

    def expire(self, key: str, ttl: int) -> bool:
        check_ttl(ttl)
        with _translate():
            return bool(self._client.expire(self._k(key), ttl))

    def add_to_set(self, key: str, member: str, ttl: int) -> None:
        check_ttl(ttl)
        k = self._k(key)
        with _translate(), self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(k, member)
            pipe.expire(k, ttl)
            pipe.execute()

    def remove_from_set(self, key: str, member: str) -> None:
        with _translate():
            self._client.srem(self._k(key), member)

    def members(self, key: str) -> set[str]:
        with _translate():
            raw = self._client.smembers(self._k(key))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}

    def publish(self, channel: str, message: bytes) -> None:
        check_value(message)
        with _translate():
            self._client.publish(self._k(channel), message)

    def wait_for(self, channel: str, timeout: float) -> bytes | None:
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with _translate():
                pubsub.subscribe(self._k(channel))
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    message = pubsub.get_message(timeout=remaining)
                    if message is not None and message.get("type") == "message":
                        return message["data"]
        finally:
            with contextlib.suppress(RedisError, OSError):
                pubsub.close()

    def ping(self) -> None:
        with _translate():
            self._client.ping()
