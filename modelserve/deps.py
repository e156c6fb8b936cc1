"""FastAPI dependencies, named as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from modelserve.state import AppState


def get_state(request: Request) -> AppState:
    """The process's shared resources."""
    state: AppState = request.app.state.modelserve
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """One session per request, committed when the endpoint returns, rolled back if it raises."""
    with state.db.transaction() as session:
        yield session


# scope="function": commit before the response is sent, so a 2xx means the data is stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
