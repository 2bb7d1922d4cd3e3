"""Document rules (DOC-1, DOC-3, DOC-4, DOC-5): pure Python, no I/O.

The category tree is the one place where the national shared record (DMP) classes and
types live (shared/REFERENCE.md, "Document classes"); the content check reads the bytes,
never trusts the file name or the browser's declared type.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024  # DOC-4: 10 MB a file
DELETION_WINDOW = timedelta(hours=24)  # DOC-5: the uploader may delete without a special right
SHARING_MODES = ("public", "shared")  # DOC-2


@dataclass(frozen=True)
class Category:
    code: str
    label: str
    system: str  # "JDV_J06" / "JDV_J07" (national value sets) or "local"


# -- the category tree ------------------------------------------------------------------

# JDV_J06 / TRE_A03 document classes, with their exact French labels.
DMP_CLASSES: tuple[Category, ...] = (
    Category("10", "Compte rendu", "JDV_J06"),
    Category("11", "Synthèse", "JDV_J06"),
    Category("31", "Imagerie médicale", "JDV_J06"),
    Category("42", "Prescription", "JDV_J06"),
    Category("43", "Dispensation", "JDV_J06"),
    Category("44", "Plan de soins, protocole de soins", "JDV_J06"),
    Category("45", "Traitement administré", "JDV_J06"),
    Category("52", "Certificat, déclaration", "JDV_J06"),
    Category("60", "Données de remboursement", "JDV_J06"),
    Category("90", "Autres documents déposés par le patient", "JDV_J06"),
    Category("95", "Document de gestion", "JDV_J06"),
    Category("99", "Document technique", "JDV_J06"),
)
# The structure's own documents (orientation sheets…), outside the national value set.
COORDINATION = Category("COORD", "Coordination", "local")
CLASSES: tuple[Category, ...] = (*DMP_CLASSES, COORDINATION)

# JDV_J07 types useful to coordination. Which class each type belongs to is not stated in
# REFERENCE.md, so no type is tied to a class here: any listed type goes with any class.
TYPES: tuple[Category, ...] = (
    Category("18776-5", "Plan personnalisé de soins", "JDV_J07"),
    Category("28653-4", "Document du secteur social / médico-social", "JDV_J07"),
    Category("34842-5", "Grille d'évaluation médico-social", "JDV_J07"),
    Category("59284-0", "Attestation de consentement", "JDV_J07"),
    Category("11490-0", "Lettre de liaison à la sortie", "JDV_J07"),
    Category("34112-3", "CR hospitalier", "JDV_J07"),
    Category("56446-8", "Notification de rendez-vous", "JDV_J07"),
    Category("96349-6", "Lettre d'adressage", "JDV_J07"),
    Category("BIL_AUTO", "CR de bilan d'évaluation de la perte d'autonomie", "JDV_J07"),
    Category("PIECE-IDENTITE", "Copie pièce d'identité", "JDV_J07"),
    Category("SYNTH", "Synthèse", "JDV_J07"),
)

CLASS_BY_CODE = {c.code: c for c in CLASSES}
TYPE_BY_CODE = {t.code: t for t in TYPES}


def category_tree() -> dict[str, list[dict[str, str]]]:
    return {
        "classes": [{"code": c.code, "label": c.label, "system": c.system} for c in CLASSES],
        "types": [{"code": t.code, "label": t.label, "system": t.system} for t in TYPES],
    }


# -- content types ----------------------------------------------------------------------

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
TEXT = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"

# Allowed content types and the file name extensions that may announce each.
ALLOWED_TYPES: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    PNG: (".png",),
    JPEG: (".jpg", ".jpeg"),
    GIF: (".gif",),
    TEXT: (".txt", ".text"),
    DOCX: (".docx",),
    ODT: (".odt",),
}
# Browsers can show these inline (DOC-3 preview); the others are always downloaded.
PREVIEWABLE = (PDF, PNG, JPEG, GIF, TEXT)

_ODT_MIMETYPE_ENTRY = b"mimetype" + ODT.encode("ascii")
_TEXT_CONTROLS_ALLOWED = {"\t", "\n", "\r", "\f"}


class DocumentRuleError(ValueError):
    def __init__(self, field: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail
        self.status = status


def sniff_content_type(content: bytes) -> str | None:
    """The content type the bytes really are (magic numbers), or None when not recognised."""
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if content.startswith(b"\xff\xd8\xff"):
        return JPEG
    if content.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if content.startswith(b"PK\x03\x04"):
        return _sniff_zip(content)
    if _is_plain_text(content):
        return TEXT
    return None


def _sniff_zip(content: bytes) -> str | None:
    # ODF puts an uncompressed "mimetype" entry first (ODF 1.2 part 3, §3.3): its name
    # starts at byte 30 of the first local header.
    if content[30 : 30 + len(_ODT_MIMETYPE_ENTRY)] == _ODT_MIMETYPE_ENTRY:
        return ODT
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            # Only the names and the tiny "mimetype" entry are read: no archive is inflated.
            if "mimetype" in names and archive.getinfo("mimetype").file_size < 100:
                if archive.read("mimetype") == ODT.encode("ascii"):
                    return ODT
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, RuntimeError, zlib.error):
        return None
    if "[Content_Types].xml" in names and "word/document.xml" in names:
        return DOCX
    return None


def _is_plain_text(content: bytes) -> bool:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    # Control characters (NUL above all) mean binary data, whatever the name says.
    return all(unicodedata.category(ch) != "Cc" or ch in _TEXT_CONTROLS_ALLOWED for ch in text)


def check_content(filename: str, content: bytes) -> str:
    """DOC-4: size, real content type, and a name that does not lie about it.

    Returns the detected content type; raises DocumentRuleError naming `file` otherwise.
    """
    if len(content) > MAX_DOCUMENT_BYTES:
        raise DocumentRuleError("file", "file is larger than the 10 MB limit", status=413)
    if not content:
        raise DocumentRuleError("file", "file is empty")
    detected = sniff_content_type(content)
    if detected is None:
        raise DocumentRuleError(
            "file", "file content type is not allowed (PDF, PNG, JPEG, GIF, plain text, DOCX or ODT)"
        )
    extension = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if extension and extension not in ALLOWED_TYPES[detected]:
        raise DocumentRuleError(
            "file", f"file name ends with {extension} but its content is {detected}: refused"
        )
    return detected


def check_categories(class_code: str, type_code: str | None) -> None:
    if class_code not in CLASS_BY_CODE:
        raise DocumentRuleError("class_code", f"class_code {class_code!r} is not a known document class")
    if type_code is not None and type_code not in TYPE_BY_CODE:
        raise DocumentRuleError("type_code", f"type_code {type_code!r} is not a known document type")


def check_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise DocumentRuleError("title", "title must not be blank")
    return cleaned


def safe_filename(filename: str | None, content_type: str) -> str:
    """A bare file name (no folders, no control characters) to offer back on download."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"').strip()[:200]
    return base or "document" + ALLOWED_TYPES[content_type][0]


def deletable_until(uploaded_at: datetime) -> datetime:
    return uploaded_at + DELETION_WINDOW


def may_delete(*, uploaded_by: str, uploaded_at: datetime, person_id: str, now: datetime) -> bool:
    """DOC-5: the uploader, within the window. After it, deletion needs a right (not here yet)."""
    return uploaded_by == person_id and now < deletable_until(uploaded_at)
