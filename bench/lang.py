"""Language identification: the factory's `lang.py` (masking + py3langid + mixed-language logic)
against py3langid alone, side by side on the same texts (tests/fixtures/lang_sentences.json:
40 sentences in 20 languages, 10 mixed texts, 5 one-language texts with math).

    python bench/lang.py
    python bench/lang.py --module /path/to/other/lang.py   # an earlier lang.py, for comparison

py3langid alone calls a text mixed when the language of any sentence differs from the target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "lang_sentences.json"


def load_module(path: str | None):
    if path is None:
        import factory.filter.lang as lang

        return lang
    spec = importlib.util.spec_from_file_location("other_lang", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_lang"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", help="another lang.py to measure instead of the factory's")
    args = ap.parse_args()
    data = json.loads(DATA.read_text(encoding="utf-8"))
    lang = load_module(args.module)
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    single = [(code, text) for code, texts in data["single"].items() for text in texts]
    latin = {"nl", "id", "tr", "pl", "sv", "vi"}

    def ours_mixed(case):
        stats = lang.language_stats(case["text"], case["target"])
        return stats.mixed or stats.share < 0.8

    def alone_mixed(case):
        sentences = [s for s in re.split(r"(?<=[.!?。])\s*", case["text"]) if len(s.split()) >= 3 or not s.isascii()]
        return any(ident.classify(s)[0] != case["target"] for s in sentences if s.strip())

    rows = []
    for name, detect, mixed in [("factory lang.py", lang.detect_language, ours_mixed),
                                ("py3langid alone", lambda t: ident.classify(t)[0], alone_mixed)]:
        detect(single[0][1])  # warm-up: models load on first use
        t0 = time.perf_counter()
        for _ in range(20):
            found = [detect(text) for _, text in single]
        per_text = (time.perf_counter() - t0) / (20 * len(single)) * 1e6
        right = sum(f == code for f, (code, _) in zip(found, single))
        right_latin = sum(f == code for f, (code, _) in zip(found, single) if code in latin)
        caught = sum(mixed(c) for c in data["mixed"])
        false = sum(mixed(c) for c in data["consistent"])
        rows.append((name, right, right_latin, caught, false, per_text))
    print(f"{'':18} {'identified':>12} {'nl/id/tr/pl/sv/vi':>18} {'mixed caught':>13} {'false mixed':>12} "
          f"{'µs/text':>8}")
    for name, right, right_latin, caught, false, per_text in rows:
        print(f"{name:18} {right:>5}/{len(single):<6} {right_latin:>11}/{2 * len(latin):<6} "
              f"{caught:>6}/{len(data['mixed']):<6} {false:>6}/{len(data['consistent']):<5} {per_text:>8.0f}")


if __name__ == "__main__":
    main()
