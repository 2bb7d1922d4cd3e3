from datetime import UTC, datetime, timedelta

import pytest

from documents import domain

PDF = b"%PDF-1.4\n%%EOF\n"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_every_dmp_class_and_the_coordination_class_are_known_with_their_labels() -> None:
    labels = {c.code: c.label for c in domain.CLASSES}
    assert labels == {
        "10": "Compte rendu",
        "11": "Synthèse",
        "31": "Imagerie médicale",
        "42": "Prescription",
        "43": "Dispensation",
        "44": "Plan de soins, protocole de soins",
        "45": "Traitement administré",
        "52": "Certificat, déclaration",
        "60": "Données de remboursement",
        "90": "Autres documents déposés par le patient",
        "95": "Document de gestion",
        "99": "Document technique",
        "COORD": "Coordination",
    }
    assert {t.code for t in domain.TYPES} == {
        "18776-5", "28653-4", "34842-5", "59284-0", "11490-0", "34112-3",
        "56446-8", "96349-6", "BIL_AUTO", "PIECE-IDENTITE", "SYNTH",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (PDF, domain.PDF),
        (b"\x89PNG\r\n\x1a\n....", domain.PNG),
        (b"\xff\xd8\xff\xdb....", domain.JPEG),
        (b"GIF87a....", domain.GIF),
        ("Compte rendu : état stable\u00a0!\n".encode(), domain.TEXT),
        (b"\xef\xbb\xbfwith a BOM", domain.TEXT),
        (b"text with a NUL\x00", None),
        (b"\xff\xfe\x00l\x00a", None),  # UTF-16 is not accepted as plain text
        (b"<svg onload=alert(1)>", domain.TEXT),  # served as text/plain with nosniff, never as SVG
        (b"PK\x03\x04 not a zip", None),
    ],
)
def test_content_type_comes_from_the_bytes(content: bytes, expected: str | None) -> None:
    assert domain.sniff_content_type(content) == expected


def test_a_name_that_lies_about_the_content_is_refused_naming_file() -> None:
    with pytest.raises(domain.DocumentRuleError) as error:
        domain.check_content("radio.pdf", b"\x89PNG\r\n\x1a\n....")
    assert error.value.field == "file"
    assert domain.check_content("RADIO.PNG", b"\x89PNG\r\n\x1a\n....") == domain.PNG
    assert domain.check_content("sans-extension", PDF) == domain.PDF


def test_the_size_limit_is_10_mb_exactly() -> None:
    at_limit = PDF + b"0" * (domain.MAX_DOCUMENT_BYTES - len(PDF))
    assert domain.check_content("a.pdf", at_limit) == domain.PDF
    with pytest.raises(domain.DocumentRuleError) as error:
        domain.check_content("a.pdf", at_limit + b"0")
    assert (error.value.field, error.value.status) == ("file", 413)


def test_unknown_codes_are_refused_naming_their_field() -> None:
    domain.check_categories("COORD", None)
    domain.check_categories("44", "18776-5")
    with pytest.raises(domain.DocumentRuleError) as error:
        domain.check_categories("12", None)
    assert error.value.field == "class_code"
    with pytest.raises(domain.DocumentRuleError) as error:
        domain.check_categories("10", "LOINC?")
    assert error.value.field == "type_code"


def test_only_the_uploader_may_delete_and_only_within_24_hours() -> None:
    uploaded = NOW - timedelta(hours=23, minutes=59)
    assert domain.may_delete(uploaded_by="p1", uploaded_at=uploaded, person_id="p1", now=NOW)
    assert not domain.may_delete(uploaded_by="p1", uploaded_at=uploaded, person_id="p2", now=NOW)
    assert not domain.may_delete(
        uploaded_by="p1", uploaded_at=NOW - timedelta(hours=24), person_id="p1", now=NOW
    )


def test_file_names_offered_back_are_bare_names() -> None:
    assert domain.safe_filename("C:\\Users\\x\\compte rendu.pdf", domain.PDF) == "compte rendu.pdf"
    assert domain.safe_filename('../../etc/"pass"wd', domain.TEXT) == "passwd"
    assert domain.safe_filename("", domain.PNG) == "document.png"
