"""The auth cache reads an entry again before it expires: a caller served from it past half of
``auth_cache_seconds`` is re-read in the background, so steady traffic never finds it stale
(no request waits for the database), and revocation still arrives within the cache's ttl of
the read that saw it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import create_key, create_user
from sqlalchemy import update

from modelserve.auth.caller import Authenticator
from modelserve.auth.models import ApiKey
from modelserve.auth.tokens import TokenSigner
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import Unauthorized


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(db: Database, clock: Clock) -> Authenticator:
    signer = TokenSigner(b"k" * 32, issuer="t", audience="t", lifetime=timedelta(minutes=5))
    return Authenticator(db, signer, ttl=10.0, clock=clock)


def test_an_entry_in_use_is_read_again_before_it_expires(db: Database) -> None:
    key = create_key(db, create_user(db, "rita"))
    clock = Clock()
    auth = authenticator(db, clock)
    try:
        assert auth.from_cache(key) is None  # nothing cached yet: the request reads it
        assert auth.authenticate(key).username == "rita"
        clock.now += 4.0  # fresh, not yet due a refresh: nothing read
        assert auth.from_cache(key) is not None
        assert auth.refresher.wait_idle(5)
        assert auth.refresher.refreshed == 0
        clock.now += 2.0  # past half its ttl: served from the cache, and read again behind it
        assert auth.from_cache(key) is not None
        assert auth.refresher.wait_idle(5)
        assert auth.refresher.refreshed == 2
        clock.now += 6.0  # 12 s after the first read, 6 after the refresh: still fresh
        caller = auth.from_cache(key)
        assert caller is not None
        assert caller.username == "rita"
    finally:
        auth.close()


def test_revocation_arrives_within_the_ttl_of_the_read_that_saw_it(db: Database) -> None:
    key = create_key(db, create_user(db, "sam"))
    clock = Clock()
    auth = authenticator(db, clock)
    try:
        auth.authenticate(key)
        clock.now += 6.0
        with db.transaction() as session:
            session.execute(update(ApiKey).values(revoked_at=utcnow()))
        assert auth.from_cache(key) is not None  # cached: the refresh it starts sees the revocation
        assert auth.refresher.wait_idle(5)
        clock.now += 0.5
        with pytest.raises(Unauthorized):  # the refreshed entry says revoked
            auth.from_cache(key)
        clock.now += 20.0
        assert auth.from_cache(key) is None  # stale: the request reads the database
        with pytest.raises(Unauthorized):
            auth.authenticate(key)
    finally:
        auth.close()
