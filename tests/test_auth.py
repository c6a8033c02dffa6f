import pytest
from sqlalchemy import select

from cti import auth
from cti.db.models import ApiToken, User
from cti.domain import Direction, LineState, Role
from cti.events import CallRinging, LineStateChanged, LinkStateChanged


def test_passwords_use_argon2_and_verify() -> None:
    hashed = auth.hash_password("пароль-123")
    assert hashed.startswith("$argon2id$")
    assert auth.verify_password(hashed, "пароль-123")
    assert not auth.verify_password(hashed, "пароль-124")
    assert not auth.verify_password(None, "x")
    assert not auth.verify_password("not-a-hash", "x")


async def test_tokens_are_stored_hashed_and_resolve_to_their_user(service) -> None:
    async with service.sessions() as session:
        user = await auth.create_user(
            session,
            "anna",
            "operator",
            extension="101",
            display_name="Анна Петрова",
            password="long-enough",
        )
        token = await auth.issue_token(session, user)
        await session.commit()
        stored = (await session.scalars(select(ApiToken))).one()
    assert token.startswith("cti_") and len(token) > 40
    assert stored.token_hash == auth.hash_token(token) != token
    assert token not in (stored.prefix, stored.token_hash)
    who = await service.authenticator.authenticate(token)
    assert who == auth.Principal(user.id, "anna", "Анна Петрова", Role.OPERATOR, "101")
    async with service.sessions() as session:
        assert (await session.scalars(select(ApiToken))).one().last_used_at is not None


async def test_revoked_tokens_and_disabled_users_are_refused(service) -> None:
    async with service.sessions() as session:
        anna = await auth.create_user(session, "anna", "sales")
        boss = await auth.create_user(session, "boss", "supervisor")
        anna_token = await auth.issue_token(session, anna)
        boss_token = await auth.issue_token(session, boss)
        await session.commit()
    assert await service.authenticator.authenticate(anna_token) is not None
    async with service.sessions() as session:
        assert await auth.revoke_tokens(session, await auth.find_user(session, "anna")) == 1
        (await auth.find_user(session, "boss")).is_active = False
        await session.commit()
    assert await service.authenticator.authenticate(anna_token) is None
    assert await service.authenticator.authenticate(boss_token) is None
    assert await service.authenticator.authenticate("cti_" + "x" * 43) is None
    assert await service.authenticator.authenticate("garbage") is None


@pytest.mark.parametrize(
    ("username", "role", "extension", "problem"),
    [
        ("anna", "operator", None, "an operator needs one"),
        ("anna", "wizard", None, "role: one of"),
        ("an na", "sales", None, "username"),
        ("anna", "sales", "10a", "extension: 1 to 10 digits"),
        ("anna", "sales", "1; DROP", "extension"),
    ],
)
async def test_user_fields_are_validated(service, username, role, extension, problem) -> None:
    async with service.sessions() as session:
        with pytest.raises(auth.UserError, match=problem):
            await auth.create_user(session, username, role, extension=extension)


async def test_usernames_are_unique(service) -> None:
    async with service.sessions() as session:
        await auth.create_user(session, "მარიამი", "sales")
        await session.commit()
        with pytest.raises(auth.UsernameTaken):
            await auth.create_user(session, "მარიამი", "operator", extension="101")
        assert len((await session.scalars(select(User))).all()) == 1


def test_role_checks_and_visibility() -> None:
    operator = auth.Principal(1, "anna", "Anna", Role.OPERATOR, "101")
    receptionist = auth.Principal(2, "maria", "Maria", Role.RECEPTIONIST, "100")
    admin = auth.Principal(3, "root", "Root", Role.ADMIN, None)
    assert operator.has_role(Role.OPERATOR, Role.SALES)
    assert not operator.has_role(Role.SUPERVISOR)
    assert admin.has_role(Role.SUPERVISOR)  # admins pass every check
    own = CallRinging(call_id="c", extension="101", direction=Direction.INBOUND)
    other = CallRinging(call_id="c", extension="102", direction=Direction.INBOUND)
    link = LinkStateChanged(name="office", kind="pbx", up=True)
    assert operator.sees_event(own) and not operator.sees_event(other)
    assert not operator.sees_event(link)
    assert receptionist.sees_event(other) and receptionist.sees_event(link)
    assert operator.sees_event(LineStateChanged(extension="101", state=LineState.IDLE))
