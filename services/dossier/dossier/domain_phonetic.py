"""French phonetic key for identity vigilance (PAT-4): Phonex, by Frédéric Brouard (1999).

Hand-written because no maintained Python package implements Phonex or Sonnex
(REFERENCE.md: `abydos` is GPL and has FONEM only). We keep Phonex's intermediate
letter code (not its final floating-point number): a short string that is a good
database index key. Tested against the published examples (Brouard's
"PHYLAURHEIMSMET" and the reference list used by the Talisman library).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Accented vowels: É/È/Ê/Ë sound like "é" (Phonex's Y); the others lose their accent.
_ACCENTS = str.maketrans("ÀÂÄÃÉÈÊËÌÎÏÒÔÖÕÙÛÜÑÇ", "AAAAYYYYIIIOOOOUUUNS")
_LIGATURES = {"Œ": "OE", "Æ": "AE", "ß": "SS"}

# Brouard's rules, applied in order on upper-case letters. Digits 1-4 are the
# nasal/compound sounds (1 = an/on, 2 = oi/oua, 3 = ou, 4 = in/ain), 5 = ch.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"Y", "I"),
        (r"([^PCS])H", r"\1"),  # silent h, except in ph, ch, sh (an initial H stays: Henry -> H1RI)
        (r"PH", "F"),
        (r"G(AI?[NM])", r"K\1"),  # gan, gam, gain, gaim -> k
        (r"[AE]I[NM]([AEIOU])", r"YN\1"),  # ain/ein/aim/eim before a vowel sound "èn"
        (r"EAU", "O"),
        (r"OUA", "2"),
        (r"[EA]I[NM]", "4"),
        (r"[EA]I", "Y"),
        (r"E([RTZ])", r"Y\1"),
        (r"ESS", "YS"),
        # Nasals only before a consonant: Brouard's published examples keep a final
        # "in"/"on" (Martin -> NORTIN), so we do too.
        (r"[AOE]N([^AEIOU1234])", r"1\1"),
        (r"[AE]M([^AEIOU1234])", r"1\1"),
        (r"IN([^AEIOU1234])", r"4\1"),
        (r"([AEIOUY1234])S(?=[AEIOUY1234])", r"\1Z"),  # s between vowels sounds z
        (r"OE|EU", "E"),
        (r"AU", "O"),
        (r"O[IY]", "2"),
        (r"OU", "3"),
        (r"SCH|CH|SH", "5"),
        (r"SS", "S"),
        (r"SC(?=[EI])", "S"),
        (r"C(?=[EI])", "S"),
        (r"GU|QU|Q|C", "K"),
        (r"G([AOY])", r"K\1"),
    )
)
_LAST_PASS = str.maketrans("ADPJBVM", "OTTGFFN")
_DUPLICATES = re.compile(r"(.)\1+")


@lru_cache(maxsize=100_000)  # names repeat a lot: scoring calls this for every candidate
def fold(value: str) -> str:
    """Upper-case, accents removed, hyphens/apostrophes/spaces collapsed to one space."""
    text = unicodedata.normalize("NFKD", value.upper())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(_LIGATURES.get(c, c) for c in text)
    return " ".join(re.sub(r"[^A-Z]+", " ", text).split())


@lru_cache(maxsize=100_000)
def phonex(value: str) -> str:
    """Phonex code of a name ("" for an empty name). Word separators are ignored."""
    text = unicodedata.normalize("NFC", value.upper())
    text = "".join(_LIGATURES.get(c, c) for c in text).translate(_ACCENTS)
    text = unicodedata.normalize("NFKD", text)
    code = re.sub(r"[^A-Z]", "", "".join(c for c in text if not unicodedata.combining(c)))
    for pattern, repl in _RULES:
        code = pattern.sub(repl, code)
    code = _DUPLICATES.sub(r"\1", code.translate(_LAST_PASS))
    return re.sub(r"[TX]$", "", code)
