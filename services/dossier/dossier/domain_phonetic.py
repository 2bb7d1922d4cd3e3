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
# Each rule carries the substrings one of which it needs to match: a rule is tried only
# when one is present (most rules do not apply to a given name, and trying all 25
# regular expressions made Phonex the most expensive step of identity scoring).
_RULES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), repl, needles)
    for pattern, repl, needles in (
        (r"Y", "I", ("Y",)),
        (r"([^PCS])H", r"\1", ("H",)),  # silent h, except in ph, ch, sh (an initial H stays: Henry -> H1RI)
        (r"PH", "F", ("PH",)),
        (r"G(AI?[NM])", r"K\1", ("GA",)),  # gan, gam, gain, gaim -> k
        (r"[AE]I[NM]([AEIOU])", r"YN\1", ("AI", "EI")),  # ain/ein/aim/eim before a vowel sound "èn"
        (r"EAU", "O", ("EAU",)),
        (r"OUA", "2", ("OUA",)),
        (r"[EA]I[NM]", "4", ("AI", "EI")),
        (r"[EA]I", "Y", ("AI", "EI")),
        (r"E([RTZ])", r"Y\1", ("ER", "ET", "EZ")),
        (r"ESS", "YS", ("ESS",)),
        # Nasals only before a consonant: Brouard's published examples keep a final
        # "in"/"on" (Martin -> NORTIN), so we do too.
        (r"[AOE]N([^AEIOU1234])", r"1\1", ("AN", "ON", "EN")),
        (r"[AE]M([^AEIOU1234])", r"1\1", ("AM", "EM")),
        (r"IN([^AEIOU1234])", r"4\1", ("IN",)),
        (r"([AEIOUY1234])S(?=[AEIOUY1234])", r"\1Z", ("S",)),  # s between vowels sounds z
        (r"OE|EU", "E", ("OE", "EU")),
        (r"AU", "O", ("AU",)),
        (r"O[IY]", "2", ("OI", "OY")),
        (r"OU", "3", ("OU",)),
        (r"SCH|CH|SH", "5", ("CH", "SH")),
        (r"SS", "S", ("SS",)),
        (r"SC(?=[EI])", "S", ("SC",)),
        (r"C(?=[EI])", "S", ("C",)),
        (r"GU|QU|Q|C", "K", ("GU", "Q", "C")),
        (r"G([AOY])", r"K\1", ("G",)),
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
    for pattern, repl, needles in _RULES:
        for needle in needles:  # a plain loop: a generator per rule cost more than the rule
            if needle in code:
                code = pattern.sub(repl, code)
                break
    code = _DUPLICATES.sub(r"\1", code.translate(_LAST_PASS))
    return code[:-1] if code.endswith(("T", "X")) else code  # a final T or X is silent
