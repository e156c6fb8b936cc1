"""User routes: yourself, and admin-only administration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from modelserve.core.db import MAX_ID
from modelserve.core.errors import ERROR_RESPONSES
from modelserve.deps import ActorDep, AdminDep, CallerDep, SessionDep
from modelserve.users.schemas import UserCreate, UserPublic, UsersPublic, UserUpdate
from modelserve.users.service import UserService

router = APIRouter(prefix="/v1/users", tags=["users"], responses=ERROR_RESPONSES)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/me", response_model=UserPublic, summary="Who am I")
def me(caller: CallerDep, session: SessionDep) -> UserPublic:
    """The authenticated user."""
    return UserService(session).get(caller.user_id)


@router.post("", response_model=UserPublic, status_code=201, summary="Create a user")
def create_user(body: UserCreate, _: AdminDep, actor: ActorDep, session: SessionDep) -> UserPublic:
    """Admins only."""
    return UserService(session).create(body, actor)


@router.get("", response_model=UsersPublic, summary="List users")
def list_users(_: AdminDep, session: SessionDep) -> UsersPublic:
    """Admins only."""
    return UserService(session).list()


@router.get("/{user_id}", response_model=UserPublic, summary="Show a user")
def get_user(user_id: UserId, _: AdminDep, session: SessionDep) -> UserPublic:
    """Admins only."""
    return UserService(session).get(user_id)


@router.patch("/{user_id}", response_model=UserPublic, summary="Change a user")
def update_user(
    user_id: UserId, body: UserUpdate, _: AdminDep, actor: ActorDep, session: SessionDep
) -> UserPublic:
    """Enable/disable, change role, email or password. Admins only."""
    return UserService(session).update(user_id, body, actor)


@router.delete("/{user_id}", status_code=204, summary="Delete a user")
def delete_user(user_id: UserId, _: AdminDep, actor: ActorDep, session: SessionDep) -> Response:
    """Their predictions stay, attributed to a deleted user. Admins only."""
    UserService(session).delete(user_id, actor)
    return Response(status_code=204)
