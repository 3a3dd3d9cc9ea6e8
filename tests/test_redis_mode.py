"""Redis mode against a real redis-server: what several web processes and
workers share goes through it."""

from __future__ import annotations

import redis

from tests.redisserver import RedisServer


def test_redis_server_is_real_and_keeps_nothing_on_disk(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.set("probe", "1", nx=True) is True
        assert client.set("probe", "2", nx=True) is None  # NX: the dedup primitive works
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        client.close()
