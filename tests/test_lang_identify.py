"""Language identification through py3langid (with lang.py's masking of math, code and numbers) on
sentences in 20 languages, Latin-script ones included, and mixed-language detection: a sentence in
another language inside reasoning, and a problem in one language answered in another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.filter.lang import detect_language, language_stats

DATA = json.loads((Path(__file__).parent / "fixtures" / "lang_sentences.json").read_text(encoding="utf-8"))
SINGLE = [(lang, text) for lang, texts in DATA["single"].items() for text in texts]


def test_at_least_twelve_languages_including_latin_script_ones():
    assert len(DATA["single"]) >= 12 and {"nl", "id", "tr", "pl", "sv", "vi"} <= set(DATA["single"])


@pytest.mark.parametrize("lang, text", SINGLE, ids=[f"{lang}-{i % 2}" for i, (lang, _) in enumerate(SINGLE)])
def test_each_language_is_identified_and_consistent_with_itself(lang, text):
    assert detect_language(text) == lang
    stats = language_stats(text, lang)
    assert not stats.mixed and stats.share > 0.9, stats


@pytest.mark.parametrize("case", DATA["mixed"], ids=lambda c: f"{c['target']}:{c['text'][:20]}")
def test_mixed_texts_are_caught(case):
    stats = language_stats(case["text"], case["target"])
    assert stats.mixed or stats.share < 0.8, stats


@pytest.mark.parametrize("case", DATA["consistent"], ids=lambda c: f"{c['target']}:{c['text'][:20]}")
def test_one_language_with_math_is_not_mixed(case):
    stats = language_stats(case["text"], case["target"])
    assert not stats.mixed and stats.share >= 0.95, stats
