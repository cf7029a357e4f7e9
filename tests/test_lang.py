"""Offline language detection, language share and mixed-language flags (factory.filter.lang)."""

from __future__ import annotations

import pytest

from factory.filter.lang import LanguageStats, detect_language, language_share, language_stats, mixed_language, tokenize

# --- mixed samples: (target, text, language named in the detail) -------------------------------------

MIXED = [
    pytest.param("en", "We need to compute 3 * 4 + 5 first. Multiplication comes before addition. "
                 "我们先计算乘法，得到十二。Then we add 5 to get 17. So the answer is 17.", "zh", id="en+zh-sentence"),
    pytest.param("en", "Let me check the result again. So the total cost is 12 dollars plus shipping, "
                 "但是我们还需要加上运费, which we computed earlier as 3 dollars in the previous step. "
                 "So the final answer is 15.", "zh", id="en+zh-run-in-sentence"),
    pytest.param("zh", "我们先把两个数相加，得到 12。所以 the answer should be 12，对吗？是的。", "en",
                 id="zh+en-phrase"),
    pytest.param("zh", "首先，我们计算 $3 \\times 4 = 12$。然后加上 5，得到 17。"
                 "Wait, let me double check the multiplication step. 所以答案是 17。", "en", id="zh+en-sentence"),
    pytest.param("zh", "设速度为 x km/h。根据题意，我们可以 write the equation as follows 并求解。"
                 "解得 x = 60。答案是 60。", "en", id="zh+en-run-in-sentence"),
    pytest.param("ru", "Сначала найдём произведение: 3 * 4 = 12. Затем прибавим 5 и получим 17. "
                 "Let me verify this once more. Значит, ответ 17.", "en", id="ru+en-sentence"),
    pytest.param("en", "First we find the area of the rectangle. The width is 4 and the length is 6. "
                 "Площадь прямоугольника равна двадцати четырём. So the area is 24.", "ru", id="en+ru-sentence"),
    pytest.param("en", "We have to split 20 apples among 4 friends. Each friend gets the same amount. "
                 "Entonces cada amigo recibe cinco manzanas en total. The answer is 5.", "es", id="en+es-sentence"),
    pytest.param("es", "Primero calculamos el área del triángulo. La base es 6 y la altura es 4. "
                 "Now we just need to divide the product by two. Entonces el área es 12.", "en", id="es+en-sentence"),
    pytest.param("en", "The train travels at 60 km per hour. In 3 hours it covers 180 km. "
                 "Donc la distance totale est de cent quatre-vingts kilomètres. The answer is 180.", "fr",
                 id="en+fr-sentence"),
    pytest.param("fr", "Nous devons trouver la somme des angles. Dans un triangle, elle est de 180 degrés. "
                 "So the missing angle is what is left over after the other two. Donc la réponse est 50.", "en",
                 id="fr+en-sentence"),
    pytest.param("de", "Zuerst berechnen wir das Produkt von 3 und 4. Das ergibt 12. "
                 "Then we add the remaining five to that number. Die Antwort ist also 17.", "en", id="de+en-sentence"),
    pytest.param("en", "Let us count the marbles. There are 7 red and 5 blue ones. "
                 "Dann ist die Summe der Murmeln gleich zwölf und nicht elf. The answer is 12.", "de",
                 id="en+de-sentence"),
    pytest.param("en", "We divide 100 by 4. Each part is 25. "
                 "Quindi la risposta è venticinque per ogni parte. So the answer is 25.", "it", id="en+it-sentence"),
    pytest.param("pt", "Primeiro somamos os dois números. O resultado é 9. "
                 "Now I should check whether this is correct. Então a resposta é 9.", "en", id="pt+en-sentence"),
    pytest.param("en", "We add the two numbers together. The sum is 9. "
                 "次に、この結果を三で割ります。Dividing 9 by 3 gives 3. The answer is 3.", "ja", id="en+ja-sentence"),
    pytest.param("zh", "我们先求出总数。总数是二十。それから、これを四で割ります。所以每人得到五个。", "ja",
                 id="zh+ja-sentence"),
    pytest.param("en", "We compute the total. 이제 두 숫자를 더하면 됩니다. The answer is 7.", "ko",
                 id="en+ko-sentence"),
    pytest.param("en", "The price is 30 dollars. نحتاج الآن إلى حساب الخصم على السعر. The answer is 24.", "ar",
                 id="en+ar-sentence"),
]


@pytest.mark.parametrize(("target", "text", "lang"), MIXED)
def test_mixed_samples_are_flagged(target: str, text: str, lang: str) -> None:
    mixed, detail = mixed_language(text, target)
    assert mixed, text
    assert detail is not None and detail.startswith(lang + " "), detail
    assert language_share(text, target) < 1.0


# --- clean samples: (target, text) ---------------------------------------------------------------------

CLEAN = [
    pytest.param("en", r"We need $\frac{a}{b} + \frac{c}{d}$ with $a = 3$, $b = 4$. Using the identity "
                 r"\[\sum_{k=1}^{n} k = \frac{n(n+1)}{2},\] we get $x^2 + 2x - 15 = 0$, so $(x+5)(x-3) = 0$ "
                 r"and x = 3. Then f(x) = 3x^2 + 2x - 5 and sin(x) + cos(x) = 1. Final: \boxed{3}.", id="en-latex"),
    pytest.param("zh", r"设速度为 $v$，时间为 $t$，则路程 $s = vt$。已知 v = 60 km/h，t = 2 h，"
                 r"所以 s = 120 km。再用 API 返回的值 x 验证：$\frac{120}{2} = 60$。答案是 \boxed{120}。",
                 id="zh-formulas-units"),
    pytest.param("ru", r"Пусть $x$ — количество яблок. Тогда $2x + 3 = 11$, откуда $x = 4$. "
                 "Проверим: 2 * 4 + 3 = 11. Значит, ответ 4.", id="ru"),
    pytest.param("es", "Primero calculamos el área del rectángulo. La base es 8 y la altura es 5, "
                 "entonces el área es 40. Luego restamos el área del cuadrado, que es 16. "
                 "Por lo tanto, la respuesta es 24.", id="es"),
    pytest.param("fr", "Nous cherchons le nombre de billes. Il y a 12 billes rouges et 8 billes bleues, "
                 "donc le total est de 20. C'est la réponse finale.", id="fr"),
    pytest.param("de", "Zuerst berechnen wir die Fläche des Quadrats. Die Seitenlänge ist 5, also ist die "
                 "Fläche 25. Dann ziehen wir 9 ab und erhalten 16. Die Antwort ist 16.", id="de"),
    pytest.param("pt", "Primeiro somamos os valores. O total é 15, então dividimos por 3. "
                 "Isso dá 5, que é a resposta.", id="pt"),
    pytest.param("it", "Prima calcoliamo il prodotto. Il risultato è 12, quindi aggiungiamo 5. "
                 "La risposta è 17.", id="it"),
    pytest.param("ja", "まず、りんごの数を数えます。赤いりんごが3個、青いりんごが4個あります。"
                 "したがって、合計は7個です。", id="ja"),
    pytest.param("en", "The sample was collected in São Paulo and shipped to Zürich. It felt like déjà vu, "
                 "since the same thing happened last year. We then met near 北京 station. The answer is 2.",
                 id="en-proper-nouns-loanwords"),
    pytest.param("en", "Call `np.linalg.solve(A, b)` and store it in `result_vector`. The helper "
                 "compute_total_price uses numItems and unitPrice, then calls math.sqrt(total).\n"
                 "```python\ndef solve(x):\n    return x ** 2  # 计算平方\n```\nThe function returns 16 for 4.",
                 id="en-code"),
    pytest.param("en", "<think> 2 + 3 = 5, 5 * 4 = 20 </think> <answer> 20 </answer>", id="seed-all-neutral"),
    pytest.param("en", "| special_token | First, find the square root of 9, which is 3. Then, add 5 to 3. "
                 "3 + 5 equals 8. | special_token | Summary: The answer is 8.", id="special-token-format"),
    pytest.param("en", "Let θ be the angle and α = π/4. By the law of cosines, c² = a² + b² - 2ab cos θ. "
                 "See https://en.wikipedia.org/wiki/Law_of_cosines for details. In triangle ABC, AB = 5.",
                 id="en-greek-url-geometry"),
    pytest.param("zh", "我们定义函数 `calculate_sum(numbers)`，然后调用 np.sum(arr) 求和。"
                 "结果是 15，单位是 cm。", id="zh-code-identifiers"),
    pytest.param("zh", "面积 Area = length × width = 5 × 3 = 15。根据勾股定理，a² + b² = c²，所以 c = 5。",
                 id="zh-formula-with-english-names"),
    pytest.param("ko", "먼저 두 수를 더합니다. 3 더하기 4는 7입니다. 따라서 답은 7입니다.", id="ko"),
    pytest.param("en", "Let me think. The price was $5 and the tax was $10 in total, so the sum is 15.",
                 id="en-currency"),
]


@pytest.mark.parametrize(("target", "text"), CLEAN)
def test_clean_samples_are_not_flagged(target: str, text: str) -> None:
    assert mixed_language(text, target) == (False, None)


# --- the same solution in eight languages: each is clean; one line of any other language is caught --------

PARALLEL = {
    "es": r"""Bien, tengo que resolver este problema. Dice que Juan tiene 3 cajas con 12 manzanas cada una y regala 8.
Primero, calculo el total de manzanas: 3 × 12 = 36. Luego, le resto las que regala: 36 - 8 = 28.
Espera, ¿lo leí bien? Sí, el enunciado dice que regala 8 manzanas en total, no por caja.
Entonces la cantidad final es 28. Para comprobarlo, sumo 28 + 8 = 36, que coincide con el total inicial.
Por lo tanto, Juan se queda con 28 manzanas. La respuesta es \boxed{28}.""",
    "pt": r"""Certo, preciso resolver este problema. João tem 3 caixas com 12 maçãs cada uma e dá 8 para os amigos.
Primeiro, calculo o total de maçãs: 3 × 12 = 36. Depois, subtraio as que ele deu: 36 - 8 = 28.
Espera, será que li direito? Sim, o enunciado diz que ele dá 8 maçãs no total, não por caixa.
Então a quantidade final é 28. Para conferir, somo 28 + 8 = 36, que bate com o total inicial.
Portanto, João fica com 28 maçãs. A resposta é \boxed{28}.""",
    "it": r"""Bene, devo risolvere questo problema. Giovanni ha 3 scatole con 12 mele ciascuna e ne regala 8.
Prima calcolo il totale delle mele: 3 × 12 = 36. Poi sottraggo quelle che regala: 36 - 8 = 28.
Aspetta, ho letto bene? Sì, il testo dice che ne regala 8 in totale, non per scatola.
Quindi la quantità finale è 28. Per verificare, sommo 28 + 8 = 36, che coincide con il totale iniziale.
Dunque Giovanni resta con 28 mele. La risposta è \boxed{28}.""",
    "fr": r"""Bon, je dois résoudre ce problème. Jean a 3 boîtes de 12 pommes chacune et il en donne 8.
D'abord, je calcule le total de pommes : 3 × 12 = 36. Ensuite, je soustrais celles qu'il donne : 36 - 8 = 28.
Attends, ai-je bien lu ? Oui, l'énoncé dit qu'il en donne 8 au total, pas par boîte.
Donc la quantité finale est 28. Pour vérifier, j'additionne 28 + 8 = 36, ce qui correspond au total initial.
Ainsi, Jean garde 28 pommes. La réponse est \boxed{28}.""",
    "de": r"""Gut, ich muss dieses Problem lösen. Hans hat 3 Kisten mit je 12 Äpfeln und verschenkt 8 davon.
Zuerst berechne ich die Gesamtzahl der Äpfel: 3 × 12 = 36. Dann ziehe ich die verschenkten ab: 36 - 8 = 28.
Moment, habe ich das richtig gelesen? Ja, in der Aufgabe steht, dass er insgesamt 8 verschenkt, nicht pro Kiste.
Also ist die Endmenge 28. Zur Probe addiere ich 28 + 8 = 36, was mit der Gesamtzahl übereinstimmt.
Somit behält Hans 28 Äpfel. Die Antwort ist \boxed{28}.""",
    "en": r"""Okay, so I need to solve this. John has 3 boxes with 12 apples each and gives away 8.
First, the total: 3 × 12 = 36. Then subtract the ones he gives away: 36 - 8 = 28.
Wait, did I read that right? Yes, the problem says he gives away 8 apples in total, not per box.
So the final amount is 28. To check, 28 + 8 = 36, which matches the initial total.
Therefore, John keeps 28 apples. The answer is \boxed{28}.""",
    "zh": r"""好的，我需要解决这个问题。小明有 3 个盒子，每个盒子里有 12 个苹果，他送出了 8 个。
首先，计算苹果总数：3 × 12 = 36。然后减去送出的：36 - 8 = 28。
等等，我读对了吗？是的，题目说他一共送出 8 个苹果，而不是每个盒子 8 个。
所以最后剩下 28 个。验证一下：28 + 8 = 36，与总数一致。
因此，小明还剩 28 个苹果。答案是 \boxed{28}。""",
    "ru": r"""Хорошо, мне нужно решить эту задачу. У Ивана 3 коробки по 12 яблок, и он отдаёт 8.
Сначала найдём общее число яблок: 3 × 12 = 36. Затем вычтем отданные: 36 - 8 = 28.
Подождите, я правильно прочитал? Да, в условии сказано, что он отдаёт 8 яблок всего, а не из каждой коробки.
Значит, остаётся 28. Проверка: 28 + 8 = 36, что совпадает с общим числом.
Итак, у Ивана остаётся 28 яблок. Ответ: \boxed{28}.""",
}
LATIN = {"en", "es", "fr", "de", "pt", "it"}


@pytest.mark.parametrize("lang", sorted(PARALLEL))
def test_parallel_solutions_are_clean(lang: str) -> None:
    text = PARALLEL[lang]
    assert detect_language(text) == lang
    assert mixed_language(text, lang) == (False, None)
    assert language_share(text, lang) == 1.0


@pytest.mark.parametrize("line", [0, 1, 2, 4])
@pytest.mark.parametrize("lang", sorted(PARALLEL))
def test_one_foreign_line_is_caught(lang: str, line: int) -> None:
    for other in sorted(set(PARALLEL) - {lang}):
        foreign = PARALLEL[other].split("\n")[line]
        text = PARALLEL[lang].replace("\n", "\n" + foreign + "\n", 1)
        mixed, detail = mixed_language(text, lang)
        assert mixed, (lang, other, foreign)
        named = detail.split()[0]
        if other in LATIN and lang not in LATIN:
            # Script alone says "Latin"; a short line may lack the stopwords that name the language.
            assert named in LATIN, (lang, other, detail)
        else:
            assert named == other, (lang, other, detail)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("We first compute the product, and then we add the remaining number to it.", "en"),
        ("Primero calculamos el producto y luego sumamos el número que falta.", "es"),
        ("Nous calculons d'abord le produit, puis nous ajoutons le nombre restant.", "fr"),
        ("Zuerst berechnen wir das Produkt und dann addieren wir die restliche Zahl.", "de"),
        ("Primeiro calculamos o produto e depois somamos o número que falta.", "pt"),
        ("Prima calcoliamo il prodotto e poi aggiungiamo il numero che manca.", "it"),
        ("我们先计算乘积，然后加上剩下的数。", "zh"),
        ("まず積を計算して、それから残りの数を足します。", "ja"),
        ("먼저 곱을 계산한 다음 남은 수를 더합니다.", "ko"),
        ("Сначала вычислим произведение, а затем прибавим оставшееся число.", "ru"),
        ("Спочатку обчислимо добуток, а потім додамо число, що залишилося.", "uk"),
        ("أولا نحسب حاصل الضرب ثم نضيف العدد المتبقي.", "ar"),
        ("קודם נחשב את המכפלה ואז נוסיף את המספר הנותר.", "he"),
        ("Πρώτα υπολογίζουμε το γινόμενο και μετά προσθέτουμε τον αριθμό.", "el"),
        ("पहले हम गुणनफल निकालते हैं और फिर बची हुई संख्या जोड़ते हैं।", "hi"),
        ("ก่อนอื่นเราคำนวณผลคูณ แล้วบวกจำนวนที่เหลือ", "th"),
        ("Compute quickly.", "en"),  # no stopword evidence: English by default
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


@pytest.mark.parametrize("text", ["", "   ", "2 + 3 = 5", r"$\frac{1}{2}$ \boxed{7}", "<think> 42 </think>"])
def test_detect_language_none_without_words(text: str) -> None:
    assert detect_language(text) is None


def test_language_share_hand_counted() -> None:
    # 8 English words + 2 Chinese characters.
    assert language_share("the answer we need here is very clear 答案", "en") == pytest.approx(0.8)
    assert language_share("the answer we need here is very clear 答案", "zh") == pytest.approx(0.2)
    # 4 Chinese characters + 1 English word; x, 3 and the formula are neutral.
    assert language_share("所以答案 $x = 3$ x yes", "zh") == pytest.approx(0.8)
    # 3 Russian words + 1 English word.
    assert language_share("Ответ равен пяти, done.", "ru") == pytest.approx(0.75)
    # A Spanish sentence inside English: its 6 words do not count (stopword evidence); 4 English words do.
    text = "We get nine apples. Entonces la respuesta es el nueve."
    assert language_share(text, "en") == pytest.approx(4 / 10)
    assert language_share(text, "es") == pytest.approx(6 / 10)
    assert language_share("all words match", "en") == 1.0
    assert language_share("完全是中文", "en") == 0.0


def test_language_share_without_words_is_one() -> None:
    seed = "<think> 2 + 3 = 5, 5 * 4 = 20 </think> <answer> 20 </answer>"
    assert language_share(seed, "en") == 1.0
    assert language_share(seed, "zh") == 1.0
    assert language_share("", "en") == 1.0
    assert mixed_language(seed, "en") == (False, None)


def test_neutral_tokens_are_ignored() -> None:
    text = (r"<think> Let $x^2 = 4$ \frac{a}{b} \boxed{2} 3x x2 x_1 `foo_bar` sqrt(2) np.sum https://ex.com/a "
            r"<|im_end|> | special_token | ABC km sin θ I a </think> done")
    assert [w.text for w in tokenize(text)] == ["Let", "done"]
    # Each CJK character is one word; Latin words are letter runs; apostrophes split.
    assert [w.text for w in tokenize("计算 it's 3个")] == ["计", "算", "it", "个"]
    assert [w.script for w in tokenize("Да, yes 好")] == ["Cyrillic", "Latin", "Han"]


def test_target_codes_are_normalized() -> None:
    assert language_share("我们计算", "zh-CN") == 1.0
    assert language_share("我们计算", "ZH_Hans") == 1.0
    assert mixed_language("Сначала посчитаем. Потом проверим ответ.", "ru-RU") == (False, None)


def test_run_inside_a_target_sentence() -> None:
    text = ("So the total cost is 12 dollars plus shipping, 但是我们还需要加上运费, which we computed earlier "
            "as 3 dollars in the previous step.")
    assert mixed_language(text, "en") == (True, "zh run: '但是我们还需要加上运费'")


def test_detail_names_the_sentence() -> None:
    mixed, detail = mixed_language("We compute it. 我们先计算乘法。Then we add.", "en")
    assert mixed and detail == "zh sentence: '我们先计算乘法'"
    long = "Now. " + "这是一个非常长的中文句子" * 10 + "。"
    assert len(mixed_language(long, "en")[1]) <= len("zh sentence: ''") + 60


def test_short_foreign_bits_are_tolerated() -> None:
    # Two Latin words in Chinese, a two-character Chinese name in English, one Spanish word in English.
    assert not mixed_language("我们用 Python 语言和 Hello World 程序计算。答案是 5。", "zh")[0]
    assert not mixed_language("Xiao Ming (小明) buys 3 apples. He pays 6 yuan.", "en")[0]
    assert not mixed_language("We broke the piñata at the party and counted 12 candies.", "en")[0]
    # Raising the threshold tolerates a longer run.
    text = "我们可以 write the equation 来求解。"
    assert mixed_language(text, "zh")[0]
    assert not mixed_language(text, "zh", min_run_words=4)[0]


def test_language_stats() -> None:
    stats = language_stats("We get 12. 然后我们加上五得到十七。The answer is 17.")
    assert isinstance(stats, LanguageStats)
    assert stats.language == "zh"  # 11 Chinese characters outnumber 5 English words
    assert stats.mixed and stats.detail.startswith("en ")
    stats = language_stats("We get 12. 然后我们加上五得到十七。The answer is 17.", "en")
    assert stats.language == "zh" and stats.mixed and stats.share == pytest.approx(5 / 16)
    assert language_stats("The answer is 17.") == LanguageStats("en", 1.0, False, None)
    assert language_stats("2 + 2 = 4") == LanguageStats(None, 1.0, False, None)
    assert language_stats("2 + 2 = 4", "en") == LanguageStats(None, 1.0, False, None)
