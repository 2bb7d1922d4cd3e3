"""Tables of the identity service only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class ProfessionRow(Base):
    """Reference list (ID-4), seeded by the initial migration."""

    __tablename__ = "professions"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    medical: Mapped[bool] = mapped_column(Boolean)


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(250))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(30))
    profession_code: Mapped[str | None] = mapped_column(ForeignKey("professions.code"), index=True)
    specialty: Mapped[str | None] = mapped_column(String(100))
    rpps: Mapped[str | None] = mapped_column(String(11), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    address: Mapped[str | None] = mapped_column(String(250))
    city: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(5), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Folded copies (no accents, lowercase) for directory search on every backend.
    name_search: Mapped[str] = mapped_column(String(400), index=True)
    city_search: Mapped[str | None] = mapped_column(String(100), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # ID-2: terms of use (CGU) acceptance, enforced later.
    terms_version: Mapped[str | None] = mapped_column(String(20))
    terms_accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Structure(Base):
    __tablename__ = "structures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(250))
    kind: Mapped[str] = mapped_column(String(20), index=True)
    finess: Mapped[str | None] = mapped_column(String(9), index=True)
    address: Mapped[str | None] = mapped_column(String(250))
    city: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(5), index=True)
    phone: Mapped[str | None] = mapped_column(String(30))
    description: Mapped[str | None] = mapped_column(Text)
    name_search: Mapped[str] = mapped_column(String(250), index=True)
    city_search: Mapped[str | None] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Membership(Base):
    __tablename__ = "memberships"

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    structure_id: Mapped[str] = mapped_column(ForeignKey("structures.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# -- OIDC provider ------------------------------------------------------------


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    response_types: Mapped[list[str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(String(200))
    # "none": a public client (browser, command line), so PKCE is mandatory.
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))


class SigningKey(Base):
    """RS256 keys; the newest unretired one signs, every unretired one is published."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    private_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class LoginSession(Base):
    """One password login (ID-2: 8 hours); codes and refresh tokens hang off it."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(40))


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    # Only the SHA-256 of the code is stored: a database leak gives no usable code.
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    session_id: Mapped[str] = mapped_column(ForeignKey("login_sessions.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(200))
    nonce: Mapped[str | None] = mapped_column(String(200))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("login_sessions.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    scope: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set when exchanged (rotation); presenting it again ends the whole session.
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
