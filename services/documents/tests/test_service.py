"""The documents service on a real database (SQLite file and PostgreSQL), through its contract."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from chassis.db import utcnow
from chassis.events import validate
from documents import domain
from documents.app import SERVICE
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

PATIENT = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"
OTHER_PATIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
FORM = {"title": "Compte rendu de sortie", "class_code": "10", "type_code": "11490-0", "sharing": "public"}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Path) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


auth = bearer


def upload(
    client: Any,
    headers: dict[str, str],
    *,
    name: str = "sortie.pdf",
    content: bytes = PDF,
    declared: str = "application/pdf",
    patient: str = PATIENT,
    **form: str,
) -> Any:
    data = {k: v for k, v in {**FORM, **form}.items() if v is not None}
    return client.post(
        f"/api/patients/{patient}/documents",
        data=data,
        files={"file": (name, content, declared)},
        headers=headers,
    )


def counts(db: Any) -> tuple[int, int]:
    with db.session_factory() as s:
        documents = s.scalar(select(func.count()).select_from(db.metadata.tables["documents"]))
        events = s.scalar(select(func.count()).select_from(db.outbox))
    return documents, events


def blob_files(var_dir: Path) -> list[Path]:
    root = var_dir / "blobs" / "documents"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_the_category_tree_has_the_dmp_classes_types_and_coordination(service: Any, issuer: TestIssuer):
    client, _ = service
    response = client.get("/api/document-categories", headers=auth(issuer))
    assert response.status_code == 200, response.text
    tree = response.json()
    classes = {c["code"]: c["label"] for c in tree["classes"]}
    assert list(classes) == ["10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95", "99", "COORD"]
    assert classes["44"] == "Plan de soins, protocole de soins"
    assert classes["COORD"] == "Coordination"
    types = {t["code"]: t["label"] for t in tree["types"]}
    assert types["BIL_AUTO"] == "CR de bilan d'évaluation de la perte d'autonomie"
    assert types["96349-6"] == "Lettre d'adressage"


def test_adding_a_document_stores_content_and_metadata_and_emits_document_added(
    service: Any, issuer: TestIssuer, var_dir: Path
):
    client, db = service
    response = upload(client, auth(issuer), declared="application/octet-stream")
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["content_type"] == "application/pdf"  # detected, not the declared type
    assert document["size"] == len(PDF)
    assert document["class_label"] == "Compte rendu"
    assert document["uploaded_by"] == "person-1"
    assert response.headers["location"] == f"/api/patients/{PATIENT}/documents/{document['id']}"
    (blob,) = blob_files(var_dir)
    assert blob.name == document["sha256"] and blob.read_bytes() == PDF

    with db.session_factory() as s:
        (envelope,) = s.scalars(select(db.outbox.c.envelope)).all()
    validate(envelope)
    assert envelope["type"] == "DocumentAdded"
    assert envelope["subject"] == PATIENT
    assert envelope["data"]["class_code"] == "10"
    assert envelope["data"]["type_code"] == "11490-0"
    assert "sortie" not in str(envelope).lower()  # neither title nor file name leaves the service

    content = client.get(f"/api/patients/{PATIENT}/documents/{document['id']}/content", headers=auth(issuer))
    assert content.status_code == 200
    assert content.content == PDF
    assert content.headers["content-type"] == "application/pdf"
    assert content.headers["content-disposition"].startswith('attachment; filename="sortie.pdf"')
    inline = client.get(
        f"/api/patients/{PATIENT}/documents/{document['id']}/content?inline=true", headers=auth(issuer)
    )
    assert inline.headers["content-disposition"].startswith("inline;")


def test_documents_are_filtered_by_class_and_type_and_kept_per_patient(service: Any, issuer: TestIssuer):
    client, _ = service
    headers = auth(issuer)
    assert upload(client, headers).status_code == 201
    assert upload(client, headers, class_code="44", type_code="18776-5").status_code == 201
    assert (
        upload(
            client,
            headers,
            class_code="COORD",
            type_code=None,
            name="orientation.txt",
            content=b"Fiche d'orientation\n",
        ).status_code
        == 201
    )
    assert upload(client, headers, patient=OTHER_PATIENT).status_code == 201

    def listed(query: str = "") -> list[str]:
        response = client.get(f"/api/patients/{PATIENT}/documents{query}", headers=headers)
        assert response.status_code == 200, response.text
        return sorted(d["class_code"] for d in response.json()["items"])

    assert listed() == ["10", "44", "COORD"]
    assert listed("?class_code=44") == ["44"]
    assert listed("?type_code=11490-0") == ["10"]
    assert listed("?class_code=10&type_code=18776-5") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"class_code": "12"}, "class_code"),
        ({"type_code": "00000-0"}, "type_code"),
        ({"title": "   "}, "title"),
        ({"title": None}, "title"),
        ({"sharing": "everyone"}, "sharing"),
        ({"content": b"MZ\x90\x00\x03\x00\x00\x00binary"}, "file"),  # an executable
        ({"content": b""}, "file"),
        ({"name": "scan.pdf", "content": PNG}, "file"),  # a lying extension
        ({"name": "notes.pdf", "content": b"just some text\n"}, "file"),
        ({"name": "macro.docx", "content": b"PK\x03\x04" + b"\x00" * 40}, "file"),  # not a real DOCX
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer, var_dir: Path, change: dict[str, Any], field: str
):
    client, db = service
    response = upload(client, auth(issuer), **change)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in problem["detail"] or problem.get("field") == field
    assert counts(db) == (0, 0)
    assert blob_files(var_dir) == []


def test_a_file_without_the_file_part_is_refused(service: Any, issuer: TestIssuer):
    client, db = service
    # A part without a file name is a plain field: this makes a multipart body without `file`.
    fields = {name: (None, value) for name, value in FORM.items()}
    response = client.post(f"/api/patients/{PATIENT}/documents", files=fields, headers=auth(issuer))
    assert response.status_code == 400, response.text
    assert "file" in response.json()["detail"]
    assert counts(db) == (0, 0)


@pytest.mark.parametrize("size", [domain.MAX_DOCUMENT_BYTES + 1, 12 * 1024 * 1024])
def test_a_file_over_10_mb_is_refused_with_413_naming_the_file(
    service: Any, issuer: TestIssuer, var_dir: Path, size: int
):
    client, db = service
    content = PDF + b"0" * (size - len(PDF))
    response = upload(client, auth(issuer), content=content)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "file"
    assert "10 MB" in response.json()["detail"]
    assert counts(db) == (0, 0)
    assert blob_files(var_dir) == []


def test_a_file_of_exactly_10_mb_is_accepted(service: Any, issuer: TestIssuer):
    client, _ = service
    content = PDF + b"0" * (domain.MAX_DOCUMENT_BYTES - len(PDF))
    response = upload(client, auth(issuer), content=content)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == domain.MAX_DOCUMENT_BYTES


def test_office_and_image_files_are_recognised_from_their_bytes(service: Any, issuer: TestIssuer):
    client, _ = service
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
    odt = io.BytesIO()
    with zipfile.ZipFile(odt, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), domain.ODT)  # stored first, uncompressed
        archive.writestr("content.xml", "<office:document-content/>")
    cases = [
        ("courrier.docx", docx.getvalue(), domain.DOCX),
        ("courrier.odt", odt.getvalue(), domain.ODT),
        ("photo.png", PNG, "image/png"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 16, "image/jpeg"),
        ("schema.gif", b"GIF89a" + b"\x00" * 16, "image/gif"),
        ("note", "Synthèse : tout va bien\r\n".encode(), "text/plain"),
    ]
    for name, content, expected in cases:
        response = upload(client, auth(issuer), name=name, content=content)
        assert response.status_code == 201, (name, response.text)
        assert response.json()["content_type"] == expected, name
    # The last one is text: served as UTF-8 so accents survive.
    text = client.get(
        f"/api/patients/{PATIENT}/documents/{response.json()['id']}/content", headers=auth(issuer)
    )
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.content.decode("utf-8") == "Synthèse : tout va bien\r\n"


def test_the_uploader_may_delete_within_24_hours_and_nobody_after(
    service: Any, issuer: TestIssuer, var_dir: Path
):
    client, db = service
    first = upload(client, auth(issuer)).json()
    second = upload(client, auth(issuer), title="Autre", content=PDF + b"%second\n").json()
    url = f"/api/patients/{PATIENT}/documents"

    refused = client.delete(f"{url}/{first['id']}", headers=auth(issuer, "person-2"))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Another patient's path does not reach the document.
    assert (
        client.delete(
            f"/api/patients/{OTHER_PATIENT}/documents/{first['id']}", headers=auth(issuer)
        ).status_code
        == 404
    )

    assert client.delete(f"{url}/{first['id']}", headers=auth(issuer)).status_code == 204
    assert client.get(f"{url}/{first['id']}/content", headers=auth(issuer)).status_code == 404
    assert [p.name for p in blob_files(var_dir)] == [second["sha256"]]

    documents = db.metadata.tables["documents"]
    with db.session_factory() as s:
        s.execute(update(documents).values(uploaded_at=utcnow() - timedelta(hours=25)))
        s.commit()
    late = client.delete(f"{url}/{second['id']}", headers=auth(issuer))
    assert late.status_code == 403
    assert "24 hours" in late.json()["detail"]
    assert counts(db)[0] == 1


def test_the_same_content_twice_keeps_one_blob_until_both_are_deleted(
    service: Any, issuer: TestIssuer, var_dir: Path
):
    client, _ = service
    one = upload(client, auth(issuer)).json()
    two = upload(client, auth(issuer), title="Copie").json()
    assert one["sha256"] == two["sha256"] and len(blob_files(var_dir)) == 1
    client.delete(f"/api/patients/{PATIENT}/documents/{one['id']}", headers=auth(issuer))
    content = client.get(f"/api/patients/{PATIENT}/documents/{two['id']}/content", headers=auth(issuer))
    assert content.content == PDF
    client.delete(f"/api/patients/{PATIENT}/documents/{two['id']}", headers=auth(issuer))
    assert blob_files(var_dir) == []


def test_no_token_is_refused(service: Any, issuer: TestIssuer):
    client, db = service
    assert client.get("/api/document-categories").status_code == 401
    assert upload(client, {}).status_code == 401
    assert counts(db) == (0, 0)


def test_an_offset_beyond_any_page_is_refused_as_bad_input_not_a_server_error(
    service: Any, issuer: TestIssuer
):
    # Found by tests/contract/test_fuzz.py: the database cannot bind an integer past 64 bits (500).
    client, _ = service
    response = client.get(
        f"/api/patients/{PATIENT}/documents?offset=14556613807982176632832", headers=auth(issuer)
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    page = client.get(f"/api/patients/{PATIENT}/documents?offset=2147483647", headers=auth(issuer))
    assert page.status_code == 200, page.text
