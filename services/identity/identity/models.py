"""Tables of the identity service only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


# Directory order: folded ASCII keys compare byte by byte ("C" collation on PostgreSQL),
# which is the right order for them and much cheaper to sort than a locale's.
SortKey = String(250).with_variant(String(250, collation="C"), "postgresql")
SearchTerm = String(100).with_variant(String(100, collation="C"), "postgresql")


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
    # Both null for a directory-only entry: a professional listed in the directory (ID-5)
    # who has no account yet and cannot log in.
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
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
    # Directory order (folded "last first"); the search keys live in directory_terms.
    sort_key: Mapped[str] = mapped_column(SortKey)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # ID-2: the terms of use (CGU) version accepted, and when.
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
    sort_key: Mapped[str] = mapped_column(SortKey)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Membership(Base):
    __tablename__ = "memberships"

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    structure_id: Mapped[str] = mapped_column(ForeignKey("structures.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


Index("ix_persons_directory_order", Person.sort_key, Person.id)
Index("ix_structures_directory_order", Structure.sort_key, Structure.id)


class DirectoryTerm(Base):
    """ID-5: the directory's search keys, one row per (entry, field, folded value).

    Fields: `name` (every word of the name: prefix search of any word), `city` (folded
    commune) and `postal` — for a person its own and those of its structures (a hospital
    nurse has no address of her own) —, `prof` (profession code) and `member` (structure
    id) for persons, `kind` for structures; `pcity` and `ppostal` ("infirmier marseille",
    "infirmier 13008") make the common profession + place search one range scan. Every row carries the entry's `sort_key`, so a
    search is answered from this table's indexes alone (index-only scans: matching ids in
    directory order, and the total), then only the page's rows are read. Terms are folded
    ASCII compared byte by byte ("C" collation), so a prefix is a plain b-tree range
    (`term >= 'dup' AND term < 'dup~'`) that stays an index range even in a generic
    prepared-statement plan, where `LIKE $1` would not; no extension (pg_trgm) is needed.
    Only active entries have terms.
    """

    __tablename__ = "directory_terms"

    entry_type: Mapped[str] = mapped_column(String(1), primary_key=True)  # "p" person, "s" structure
    field: Mapped[str] = mapped_column(String(8), primary_key=True)
    term: Mapped[str] = mapped_column(SearchTerm, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sort_key: Mapped[str] = mapped_column(SortKey)


Index(
    "ix_directory_terms_prefix",
    DirectoryTerm.entry_type,
    DirectoryTerm.field,
    DirectoryTerm.term,
    DirectoryTerm.sort_key,
    DirectoryTerm.entry_id,
)
# Probes "has this entry that term?" when filters combine.
Index("ix_directory_terms_entry", DirectoryTerm.entry_id, DirectoryTerm.field, DirectoryTerm.term)


class Delegation(Base):
    """ID-6: `delegate_id` may act in `grantor_id`'s name for `scopes` once accepted."""

    __tablename__ = "delegations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grantor_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    delegate_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    ends_on: Mapped[date | None] = mapped_column(Date)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_by: Mapped[str | None] = mapped_column(String(36))
    end_cause: Mapped[str | None] = mapped_column(String(10))


Index("ix_delegations_grantor", Delegation.grantor_id, Delegation.status)
Index("ix_delegations_delegate", Delegation.delegate_id, Delegation.status)
Index("ix_delegations_expiry", Delegation.status, Delegation.ends_on)


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
