"""Offline language consistency and mixed-language detection for reasoning text.

R1's language-consistency reward is the share of chain-of-thought words in the target
language, and R1 rejected samples that mix languages. A model-based detector run on raw
reasoning misses mixed samples, mostly because math, numbers and short clauses dilute its
statistics; a Unicode-script heuristic catches them. So the text is masked first, scripts
come from code points, and languages that share a script are told apart by py3langid
(97 languages, its model ships in the package) on the masked words:

* Scripts come from code points. Chinese/Japanese have no spaces, so each Han, kana and
  hangul character counts as one word; other scripts count runs of letters.
* Languages sharing a script (Latin, Cyrillic, Arabic, Devanagari) are identified by py3langid
  when there are enough words; a sentence of another Latin language inside reasoning is found by
  small stopword lists (en, es, fr, de, pt, it) or, when the sentence has few of the target's
  stopwords, by py3langid being sure of another language. A few words with no evidence are "en".
* Neutral (not counted): digits, symbols, math spans and LaTeX commands, code spans and
  identifiers, URLs, format tags (<think>, <|...|>, "| special_token |"), single ASCII letters,
  all-caps tokens (API, ABC), units and math function names (km, sin), single Greek letters,
  and Latin words touching a formula operator ("Area = length × width"). So math-heavy
  reasoning, or Chinese with variable names and units, is not called mixed.

Shares: a text with no words has share 1.0 (nothing is inconsistent). Share is by script,
except that Latin words in a sentence found to be in another Latin language (e.g. a Spanish
or Dutch sentence in English reasoning) do not count for the target.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["LanguageStats", "Word", "detect_language", "language_share", "language_stats", "mixed_language", "tokenize"]

_RANGES = sorted([
    (0x41, 0x5A, "Latin"), (0x61, 0x7A, "Latin"), (0xC0, 0x2AF, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x370, 0x3FF, "Greek"), (0x1F00, 0x1FFF, "Greek"), (0x400, 0x52F, "Cyrillic"),
    (0x590, 0x5FF, "Hebrew"), (0xFB1D, 0xFB4F, "Hebrew"), (0x600, 0x6FF, "Arabic"), (0x750, 0x77F, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"), (0x900, 0x97F, "Devanagari"), (0xE00, 0xE7F, "Thai"),
    (0x980, 0x9FF, "Bengali"), (0xA00, 0xA7F, "Gurmukhi"), (0xA80, 0xAFF, "Gujarati"), (0xB80, 0xBFF, "Tamil"),
    (0xC00, 0xC7F, "Telugu"), (0xC80, 0xCFF, "Kannada"), (0xD00, 0xD7F, "Malayalam"), (0x530, 0x58F, "Armenian"),
    (0x10A0, 0x10FF, "Georgian"), (0x1200, 0x137F, "Ethiopic"),
    (0x1100, 0x11FF, "Hangul"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3040, 0x30FF, "Kana"), (0x31F0, 0x31FF, "Kana"), (0xFF66, 0xFF9F, "Kana"),
    (0x3005, 0x3007, "Han"), (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"),
    (0x20000, 0x3134F, "Han"),
])
_STARTS = [r[0] for r in _RANGES]
_CHAR_WORDS = {"Han", "Kana", "Hangul"}  # one character = one word (no spaces between words)
_SCRIPT_LANG = {"Han": "zh", "Kana": "ja", "Hangul": "ko", "Cyrillic": "ru", "Arabic": "ar", "Hebrew": "he",
                "Greek": "el", "Devanagari": "hi", "Thai": "th", "Bengali": "bn", "Gurmukhi": "pa", "Gujarati": "gu",
                "Tamil": "ta", "Telugu": "te", "Kannada": "kn", "Malayalam": "ml", "Armenian": "hy", "Georgian": "ka",
                "Ethiopic": "am", "Other": "und"}
_TARGET_SCRIPTS = {"ja": {"Han", "Kana"}} | {  # any other code is a Latin-script language
    code: {script} for script, codes in {"Han": "zh", "Hangul": "ko", "Arabic": "ar fa ur", "Hebrew": "he",
    "Greek": "el", "Devanagari": "hi mr ne", "Thai": "th", "Cyrillic": "ru uk be bg sr mk kk", "Bengali": "bn as",
    "Gurmukhi": "pa", "Gujarati": "gu", "Tamil": "ta", "Telugu": "te", "Kannada": "kn", "Malayalam": "ml",
    "Armenian": "hy", "Georgian": "ka", "Ethiopic": "am ti"}.items()
    for code in codes.split()}
_KANA_SHARE = 0.15  # Japanese runs ~30-60% kana; a stray "の" in Chinese should not make it Japanese.

# Neutral spans, blanked (length-preserving) before words are read. Order matters: fenced code
# before inline code, display math before inline math.
# (DeepSeek's fullwidth "<｜...｜>" tokens become "<|...|>" under NFKC, so one pattern covers both.)
_NEUTRAL = re.compile("|".join([
    r"```.*?```", r"`[^`\n]+`",
    r"\$\$.*?\$\$", r"\\\[.*?\\\]", r"\\\(.*?\\\)", r"\\begin\{[^}]*\}.*?\\end\{[^}]*\}",
    r"\$(?!\s)[^$\n]*?(?<!\s)\$(?!\d)",  # pandoc's rule, so "$5 and $10" stays text
    r"https?://\S+", r"www\.\S+", r"[A-Za-z0-9.+_-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.]+",
    r"<\|[^|>\n]*\|>", r"(?i:\|\s*special[ _]token\s*\|)", r"</?[A-Za-z][\w:-]*\s*/?>",
    r"\\[A-Za-z]+\*?",  # LaTeX commands outside math: \frac, \boxed
    r"(?<![A-Za-z0-9_])[A-Za-z0-9]*_[A-Za-z0-9_]*",  # snake_case, x_1
    r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_.]*\([^()\n]*\)",  # calls with their arguments: sqrt(2), np.sum(arr)
    r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+",  # np.linalg.solve, main.py, e.g
    r"(?<![A-Za-z0-9_])[A-Za-z][a-z0-9]*[A-Z][A-Za-z0-9]*",  # camelCase, NumPy
    r"(?<![A-Za-z0-9_])(?:[A-Za-z]+\d|\d+[A-Za-z])[A-Za-z0-9]*",  # x2, 3x, 10km, mp3
    r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*(?=\()",  # calls with nested arguments: f(g(x))
]), re.S)
# Units and math function names read as Latin words but are notation in any language.
_NEUTRAL_WORDS = set("km cm mm nm kg mg ml mph kmh kwh hz khz mhz ghz kb mb gb tb ms ns sin cos tan cot sec csc "
                     "arcsin arccos arctan sinh cosh tanh log ln lg exp lim max min sup inf mod gcd lcm sqrt det "
                     "deg rad".split())
# A Latin word next to one of these is a name in a formula ("Area = length × width"), not prose.
# "*" is left out because Markdown bold uses it; "-" because hyphenated words do.
_OPS = set("=<>+/×÷^≤≥≠≈")
_SENTENCE = re.compile(r"[^.!?;。！？；।؟\n]+")
_RUN_GAP = re.compile(r"[\s,'\"‘’“”()\-–—:、，]*")  # what may separate words of one natural-language run

# A few dozen frequent words per language (plus reasoning staples). Shared words split their vote.
_STOPWORDS = {
    "en": "the and of to in is that it for as with was on be by this are we so then not or but have has had from "
          "at which can if will there they its an our let now first next need get each since therefore because "
          "what how do does did no also per would could should must about into than only just very all any some "
          "these those who where when why one two three four five both same other again still here were been "
          "wait check okay equals answer find total number sum result",
    "es": "el la los las de del que en un una es por con para se su al lo como más pero sus le ya este esta esto "
          "eso ese esa entonces tenemos tengo tiene tienen porque sí son cada también hay muy ser cuando donde "
          "respuesta número primero luego ahora así no hace hacer puede debe vamos fue era sería dice dos tres "
          "cuatro cinco mi mis nos pues bien sobre entre hasta desde sin mismo todo todos cual qué cómo cuántos "
          "estoy está están sea veces menos igual resultado suma resto calculo calculamos queda quedan espera",
    "fr": "le la les de des du et est un une que qui qu en dans pour pas sur au aux avec ce cette il elle nous on "
          "sont par ne se son donc puis mais ou alors chaque réponse avons faut être fait comme nombre ensuite "
          "je tu ils elles vous mon ma mes sa ses leur ai avoir faire peut dois doit allons était serait dit ceci "
          "cela ça deux trois quatre cinq sous sans même tout tous toute quel quelle combien suis soit fois moins "
          "égal résultat somme reste calcule calculons donne ainsi abord lorsque quand où très aussi bien attends",
    "de": "der die das und ist nicht ein eine einen zu den dem des mit von sich auf für im es auch als wir sind "
          "dann also wenn noch nach bei oder aber wie nun jetzt haben wird dass diese ergibt gleich antwort zahl "
          "müssen ich du er sie ihr mein meine sein seine ihre hat habe hatte wäre kann muss soll dieser dieses "
          "diesen jeder zwei drei vier fünf über unter ohne alles alle welche viele bin sei mal weniger ergebnis "
          "summe berechne berechnen bleibt somit daher deshalb hier sehr zuerst danach moment insgesamt richtig",
    "pt": "os as do da dos das de que em um uma é não com para por se na no nos ao mais como mas foi ser são "
          "está isso então temos também cada resposta agora depois pelo pela entre já seu sua ele ela eles isto "
          "este esta esse essa aqui há tem ter fazer pode deve vamos era seria diz dois duas três quatro cinco "
          "meu minha sobre até sem mesmo todo todos qual quantos estou estão seja vezes menos igual resultado "
          "soma resto calculo calculamos fica ficam portanto logo porque onde quando muito espera primeiro número",
    "it": "il lo la di che è un una per non con del della dei delle al alla nel nella sono si le gli da questo "
          "questa ma anche quindi poi ora dobbiamo abbiamo risposta ogni più essere dell sull perché io lui lei "
          "noi mio mia suo sua ho hai ha hanno avere fare fatto può posso deve devo era sarebbe dice quello "
          "quella ci ne tre quattro cinque sopra sotto senza stesso tutto tutti quale quanti siamo sia volte "
          "meno uguale risultato somma calcolo calcoliamo resta dunque allora qui dove quando molto prima dopo numero "
          "aspetta",
}
_STOP = {lang: set(ws.split()) for lang, ws in _STOPWORDS.items()}
_VOTES = {w: [lang for lang in _STOP if w in _STOP[lang]] for ws in _STOP.values() for w in ws}
# Letters that lean to one language: weak evidence (a loanword like "piñata" must not flip a sentence).
_CHAR_HINTS = {"ñ": ("es",), "ß": ("de",), "ä": ("de",), "ö": ("de",), "ü": ("de",), "ã": ("pt",), "õ": ("pt",),
               "ç": ("fr", "pt"), "œ": ("fr",), "ê": ("fr", "pt"), "è": ("fr", "it"), "ì": ("it",), "ò": ("it",)}


class Word(NamedTuple):
    text: str
    script: str
    start: int  # offsets into the NFKC-normalized text
    end: int


@dataclass(frozen=True)
class LanguageStats:
    language: str | None  # dominant language of the text (None: no words)
    share: float  # share of words in the target language
    mixed: bool
    detail: str | None  # the first foreign stretch, e.g. "zh sentence: '我们先计算乘法'"


def _script(ch: str) -> str:
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    return _RANGES[i][2] if i >= 0 and cp <= _RANGES[i][1] else "Other"


@functools.lru_cache(maxsize=8)
def _prepare(text: str) -> tuple[str, str]:
    """(normalized, cleaned): cleaned has neutral spans blanked with \\x1f, same length, so offsets agree."""
    norm = unicodedata.normalize("NFKC", text or "")
    return norm, _NEUTRAL.sub(lambda m: "\x1f" * len(m.group()), norm)


def _is_neutral(w: str, script: str) -> bool:
    # Single ASCII letters are variables as often as words ("a", "I"); all-caps are acronyms or geometry
    # names (API, ABC); single Greek letters are math (π, θ); "é"/"à" stay words (pt/fr need them).
    if script == "Latin":
        return (len(w) == 1 and w.isascii()) or (len(w) > 1 and w.isupper()) or w.lower() in _NEUTRAL_WORDS
    return script == "Greek" and len(w) == 1


def _near_op(s: str, i: int, step: int) -> bool:
    """Whether the next non-blank character from i (going by step) is a formula operator."""
    while 0 <= i < len(s) and s[i] in " \t":
        i += step
    return 0 <= i < len(s) and s[i] in _OPS


_ASCII_WORD = re.compile(r"[A-Za-z]+")


def _scan(cleaned: str, start: int = 0, end: int | None = None) -> list[Word]:
    end = len(cleaned) if end is None else end
    if cleaned.isascii():
        # Fast path for the common case (English, LaTeX, code): a word is a run of ASCII letters,
        # exactly what the general loop below yields for Latin script, at regex speed.
        return [
            Word(m.group(), "Latin", m.start(), m.end())
            for m in _ASCII_WORD.finditer(cleaned, start, end)
            if not _near_op(cleaned, m.start() - 1, -1) and not _near_op(cleaned, m.end(), 1)
            and not _is_neutral(m.group(), "Latin")
        ]
    words: list[Word] = []
    cur, cur_script, cur_start = "", None, 0

    def flush() -> None:
        stop = cur_start + len(cur)
        in_formula = cur_script == "Latin" and (_near_op(cleaned, cur_start - 1, -1) or _near_op(cleaned, stop, 1))
        if cur and not in_formula and not _is_neutral(cur, cur_script):
            words.append(Word(cur, cur_script, cur_start, stop))

    for i in range(start, end):
        ch = cleaned[i]
        cat = unicodedata.category(ch)
        if cat[0] == "M" and cur:  # combining marks (Devanagari, Thai, Arabic vowels) extend the word
            cur += ch
            continue
        script = _script(ch) if cat[0] == "L" else None
        if script is not None and script == cur_script and script not in _CHAR_WORDS:
            cur += ch
            continue
        flush()
        cur, cur_script, cur_start = (ch, script, i) if script else ("", None, i)
        if script in _CHAR_WORDS:
            flush()
            cur, cur_script = "", None
    flush()
    return words


def tokenize(text: str) -> list[Word]:
    """The non-neutral words of `text` (each CJK character is one word)."""
    return _scan(_prepare(text)[1])


def _norm_target(target: str) -> str:
    return re.split(r"[-_]", (target or "en").strip().lower())[0]


def _latin_scores(words: list[Word]) -> Counter:
    scores: Counter = Counter()
    for w in words:
        if w.script != "Latin":
            continue
        low = w.text.lower()
        votes = _VOTES.get(low)
        if votes:
            for lang in votes:
                scores[lang] += 1 / len(votes)
        if low.isascii():
            continue  # the letter hints (ñ, ß, ç...) are all outside ASCII
        for ch in set(low) & _CHAR_HINTS.keys():
            for lang in _CHAR_HINTS[ch]:
                scores[lang] += 0.5 / len(_CHAR_HINTS[ch])
    return scores


@functools.cache
def _identifier():
    # py3langid: a naive Bayes model over byte n-grams for 97 languages, shipped in the package (offline).
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(words: list[Word]) -> tuple[str, float]:
    """(language, probability) of the words read together, by py3langid."""
    return _identifier().classify(" ".join(w.text for w in words))


# Enough words for the identifier to be sure of a sentence, and how sure it must be to call it foreign.
_MIN_IDENTIFY_WORDS = 5
_FOREIGN_PROBABILITY = 0.95
# A sentence in the target language nearly always has some of its stopwords; one with fewer than this
# share (a Dutch sentence in English reasoning) is given to the identifier.
_TARGET_STOPWORD_SHARE = 0.2


def _few_target_stopwords(words: list[str], target: str) -> bool:
    stop = _STOP.get(target)
    return stop is None or sum(w.lower() in stop for w in words) < _TARGET_STOPWORD_SHARE * len(words)


def _latin_foreign(words: list[Word], target: str) -> str | None:
    """Another Latin language: clear stopword evidence (>= 2 votes, twice the target's), or, for a
    sentence long enough, py3langid sure of another language while the target's stopwords are few."""
    scores = _latin_scores(words) if target in _STOP else Counter()
    best, score = (scores.most_common(1) or [(None, 0)])[0]
    if best != target and score >= 2 and score >= 2 * scores[target]:
        return best
    latin = [w for w in words if w.script == "Latin"]
    if len(latin) >= _MIN_IDENTIFY_WORDS and _few_target_stopwords([w.text for w in latin], target):
        lang, p = identify(latin)
        if lang != target and p >= _FOREIGN_PROBABILITY and _TARGET_SCRIPTS.get(lang, {"Latin"}) == {"Latin"}:
            return lang
    return None


def _buckets(words: list[Word]) -> Counter:
    """Word counts per script, with Han folded into Kana when the kana share says Japanese."""
    counts = Counter(w.script for w in words)
    cjk = counts["Han"] + counts["Kana"]
    if counts["Kana"] and counts["Kana"] >= _KANA_SHARE * cjk:
        counts["Kana"] = cjk
        del counts["Han"]
    return +counts


# Scripts several languages share: the identifier tells them apart (Dutch from English, Ukrainian from Russian).
_SHARED_SCRIPTS = {"Latin", "Cyrillic", "Arabic", "Devanagari"}


def _language_of(words: list[Word], script: str) -> str:
    same = [w for w in words if w.script == script]
    if script in _SHARED_SCRIPTS and len(same) >= 3:
        lang, p = identify(same)
        # Close languages share the probability (id/ms, no/da), so a sentence-long text needs less of it.
        if p >= (0.5 if len(same) >= _MIN_IDENTIFY_WORDS else 0.8) and script in _TARGET_SCRIPTS.get(lang, {"Latin"}):
            return lang
    if script == "Latin":  # a few words, or the identifier unsure: stopwords, else English
        scores = _latin_scores(words)
        best = scores.most_common(1)
        return best[0][0] if best and best[0][1] >= 1 else "en"
    if script == "Cyrillic":
        uk = sum(bool(set(w.text.lower()) & set("іїєґ")) for w in words)
        ru = sum(bool(set(w.text.lower()) & set("ыэъё")) for w in words)
        return "uk" if uk > ru else "ru"
    return _SCRIPT_LANG[script]


def _dominant(words: list[Word], accepted: set[str] = frozenset()) -> tuple[str, int]:
    counts = _buckets(words)
    top = max(counts.values())
    # Ties go to the target's script: "The capital is 北京市" is an English sentence.
    script = next((s for s, n in counts.items() if n == top and s in accepted), None)
    return (script or next(s for s, n in counts.items() if n == top)), top


@functools.lru_cache(maxsize=4096)  # a problem's samples all ask for the problem's language
def detect_language(text: str) -> str | None:
    """Dominant language code ("en", "zh", "ja", "ru", ...), None for a text with no words."""
    words = tokenize(text)
    return _language_of(words, _dominant(words)[0]) if words else None


@functools.lru_cache(maxsize=8)  # language_stats asks for the same text's sentences three times
def _sentences(cleaned: str) -> list[tuple[int, int, list[Word]]]:
    spans = ((m.start(), m.end(), _scan(cleaned, m.start(), m.end())) for m in _SENTENCE.finditer(cleaned))
    return [s for s in spans if s[2]]


def language_share(text: str, target: str) -> float:
    """Share of non-neutral words in `target` (1.0 when there are no words)."""
    target = _norm_target(target)
    accepted = _TARGET_SCRIPTS.get(target, {"Latin"})
    total = hits = 0
    for _, _, words in _sentences(_prepare(text)[1]):
        foreign_latin = "Latin" in accepted and _latin_foreign(words, target) is not None
        total += len(words)
        hits += sum(w.script in accepted and not (w.script == "Latin" and foreign_latin) for w in words)
    return hits / total if total else 1.0


def _clip(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


def mixed_language(text: str, target: str, min_run_words: int = 3) -> tuple[bool, str | None]:
    """(mixed, detail): a sentence in another language, or a foreign-script run inside a sentence.

    A sentence (split on . ! ? ; 。 ！ ？ and newlines) is foreign when its dominant script is not the
    target's and has >= min_run_words words, or (Latin targets) when stopwords clearly say another
    Latin language. A run is >= min_run_words consecutive foreign-script words separated only by
    spaces or light punctuation (twice that for CJK characters, since names are 2-4 characters).
    """
    target = _norm_target(target)
    accepted = _TARGET_SCRIPTS.get(target, {"Latin"})
    norm, cleaned = _prepare(text)
    for start, end, words in _sentences(cleaned):
        script, n = _dominant(words, accepted)
        if script not in accepted and n >= min_run_words:
            return True, f"{_language_of(words, script)} sentence: '{_clip(norm[start:end])}'"
        if script == "Latin" and "Latin" in accepted and sum(w.script == "Latin" for w in words) >= min_run_words:
            lang = _latin_foreign(words, target)
            if lang:
                return True, f"{lang} sentence: '{_clip(norm[start:end])}'"
        run: list[Word] = []
        for w in words + [Word("", "", end, end)]:  # sentinel closes the last run
            pair = {w.script, run[-1].script} if run else set()
            # Japanese alternates kanji and kana within one phrase, so they make one run.
            joined = (len(pair) == 1 or pair == {"Han", "Kana"}) and _RUN_GAP.fullmatch(cleaned, run[-1].end, w.start)
            if run and not joined:
                need = min_run_words * (2 if run[0].script in _CHAR_WORDS else 1)
                if len(run) >= need:
                    lang = _language_of(run, _dominant(run)[0])
                    return True, f"{lang} run: '{_clip(norm[run[0].start:run[-1].end])}'"
                run = []
            if w.script and w.script not in accepted:
                run.append(w)
    return False, None


def _ascii_stats(text: str, target: str) -> LanguageStats | None:
    """The common case at regex speed: ASCII text, Latin target, too little foreign stopword
    evidence anywhere (no language reaches 2 votes in the whole text) for any sentence to be foreign. None: do the
    full analysis."""
    cleaned = _prepare(text)[1]
    if (not cleaned.isascii() or target not in _STOP or "Latin" not in _TARGET_SCRIPTS.get(target, {"Latin"})
            or not _ASCII_WORD.search(cleaned)):
        return None  # targets without stopword lists (nl, tr, id...) are read sentence by sentence
    scores: Counter = Counter()
    counts = Counter(w.lower() for w in _ASCII_WORD.findall(cleaned) if len(w) > 1)  # single letters are neutral
    for low in counts.keys() & _VOTES.keys():
        for lang in _VOTES[low]:
            scores[lang] += counts[low] / len(_VOTES[low])
    if max((v for lang, v in scores.items() if lang != target), default=0) >= 2:
        return None  # some sentence may be foreign: the full analysis decides
    for m in _SENTENCE.finditer(cleaned):  # a sentence with few target stopwords may be in a language without a list
        words = [w for w in _ASCII_WORD.findall(m.group()) if len(w) > 1]
        if len(words) >= _MIN_IDENTIFY_WORDS and _few_target_stopwords(words, target):
            return None
    best = scores.most_common(1)
    return LanguageStats(best[0][0] if best and best[0][1] >= 1 else "en", 1.0, False, None)


def language_stats(text: str, target: str | None = None) -> LanguageStats:
    """Dominant language, share and mixing against `target` (None: the text's own language)."""
    fast = _ascii_stats(text, _norm_target(target)) if target else None
    if fast is not None:
        return fast
    language = detect_language(text)
    target = target or language
    if target is None:
        return LanguageStats(None, 1.0, False, None)
    mixed, detail = mixed_language(text, target)
    return LanguageStats(language, language_share(text, target), mixed, detail)
