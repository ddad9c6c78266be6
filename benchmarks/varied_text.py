"""Deterministic, deliberately varied text for tokenizer tests and benchmarks.

Real corpora are not just English prose: they hold code, many scripts, emoji, odd
whitespace and long numbers, and those are where tokenizer implementations tend to
disagree. This module makes such text from a seed, so a test and a benchmark can use
megabytes of it without shipping any data file.

It lives in `benchmarks/` (not in the `gpt2lab` package, which users install): it is a
measuring tool, not a feature. Tests import it as `benchmarks.varied_text`, which works
because pytest puts the project root on `sys.path` (tests/ is a package).
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Word lists read better as one string each; hence the noqa.
_ENGLISH = (  # noqa: SIM905
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more can who out up than them about into only time new some could these "
    "two may first then do any like my now over such our man me even most made after also "
    "did many before must through back years where much your way well down should because "
    "each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three "
    "tokenizer language model merges bytes vocabulary training gradient attention layer "
    "Reddit links karma WebText corpus transformer sample temperature nucleus evaluation"
).split()
_CONTRACTIONS = (  # noqa: SIM905
    "it's they're we'll don't I'm I've he'd she'll you're that's can't won't isn't "
    "we've they'd O'Brien rock'n'roll 'quoted' y'all"
).split()
_PUNCTUATION = [".", ",", ";", ":", "!", "?", "...", " -", " --", "—", "…"]

_SCRIPTS = {
    "latin": "café naïve résumé Ærøskøbing Łódź straße façade São Paulo Việt Nam İstanbul "
    "fjörður crème brûlée Dvořák Ñandú garçon Zürich œuvre",
    "greek": "Καλημέρα κόσμε η γλώσσα των Ελλήνων είναι αρχαία και όμορφη λόγος ψυχή",
    "cyrillic": "Привет мир съешь же ещё этих мягких французских булок да выпей чаю Ёлка",
    "chinese": "你好 世界 语言 模型 分词 训练 数据 我们 今天 学习 机器 翻译 中文",
    "japanese": "こんにちは 世界 日本語 の テキスト カタカナ ひらがな 東京 です ます",
    "korean": "안녕하세요 세계 한국어 문장 토큰 학습 데이터 서울",
    "arabic": "مرحبا بالعالم اللغة العربية جميلة نموذج الترجمة الآلية كتاب",
    "hebrew": "שלום עולם עברית שפה מודל",
    "devanagari": "नमस्ते दुनिया हिन्दी भाषा मॉडल प्रशिक्षण शब्द क्षत्रिय",
    "thai": "สวัสดี ชาวโลก ภาษาไทย แบบจำลอง",
}
_CJK_PUNCTUATION = ["。", "、", "，", "！", "？", "「", "」", "・"]

# fmt: off
_EMOJI = [
    "😀", "😂", "🤖", "🚀", "❤️", "✨", "🔥", "👍", "👍🏽", "👋🏿", "🧑🏻‍💻",
    "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "🇫🇷", "🇯🇵", "🇺🇳", "1️⃣", "#️⃣",
    "☕", "🐍", "🦀", "🫠", "©", "™", "→", "∑", "∞", "≠", "½", "°C",
]
_ODD_WHITESPACE = [
    "\t", "\t\t", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000", "  ", "    ",
    "        ", " \n", "   \n", "\t\n", "\n\n\n", " \r\n", "\u00a0\u00a0", "\n \n",
]
# fmt: on


def _words(rng: random.Random, n: int) -> list[str]:
    words = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.08:
            words.append(rng.choice(_CONTRACTIONS))
        elif roll < 0.11:
            words.append(str(rng.choice([7, 42, 1999, 2024, 3.14, 1_000_000, 0.5])))
        else:
            words.append(rng.choice(_ENGLISH))
    return words


def _prose(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 7)):
        words = _words(rng, rng.randint(4, 22))
        words[0] = words[0].capitalize()
        if rng.random() < 0.3:
            i = rng.randrange(len(words))
            words[i] = rng.choice(['"', "(", "“", "'"]) + words[i] + rng.choice(['"', ")", "”"])
        for _ in range(rng.randint(0, 2)):  # some inner punctuation: "word," "word;" "word —"
            i = rng.randrange(len(words) - 1)
            words[i] += rng.choice(_PUNCTUATION)
        end = rng.choice([".", ".", ".", "!", "?", "...", ":"])
        sentences.append(" ".join(words) + end)
    return " ".join(sentences)


def _python_code(rng: random.Random) -> str:
    name = "_".join(rng.sample(_ENGLISH[:60], 2))
    args = ", ".join(rng.sample(["x", "y", "tokens", "n_ctx", "self", "ids"], 2))
    body = [
        f"def {name}({args}) -> list[int]:",
        f'    """Return the {rng.choice(_ENGLISH)} of {rng.choice(_ENGLISH)}."""',
        "    result = []",
        f"    for i in range({rng.randint(1, 4096)}):",
        "        if i % 2 == 0 and i != 10:  ",
        f"            result.append(i ** 2 + {rng.randint(0, 99)})  # it's {rng.choice(_ENGLISH)}",
        "        elif i >= 0x1F:",
        '            result += [i, -i]; print(f"{i:>8}\\t{result!r}")',
        "",
        "    return result",
    ]
    newline = "\r\n" if rng.random() < 0.2 else "\n"
    return newline.join(body)


def _c_code(rng: random.Random) -> str:
    body = [
        "#include <stdio.h>",
        f"static int {rng.choice(_ENGLISH[:60])}_count(const char *s, size_t n) {{",
        "\tint total = 0;   ",
        "\tfor (size_t i = 0; i < n; ++i) {",
        "\t\tif (s[i] == '\\n' || s[i] == '\\t') total++;",
        f"\t\telse total += (s[i] >> {rng.randint(1, 7)}) & 0xFF;",
        "\t}",
        '\tprintf("%d\\n", total); /* done */',
        "\treturn total;",
        "}",
    ]
    return "\n".join(body)


def _script_text(rng: random.Random) -> str:
    script = rng.choice(list(_SCRIPTS))
    words = _SCRIPTS[script].split()
    out = []
    for _ in range(rng.randint(3, 12)):
        out.append(rng.choice(words))
        if script in ("chinese", "japanese") and rng.random() < 0.6:
            out.append(rng.choice(_CJK_PUNCTUATION))
        elif rng.random() < 0.15:
            out.append(rng.choice(_PUNCTUATION))
    sep = "" if script in ("chinese", "japanese") and rng.random() < 0.5 else " "
    return sep.join(out)


def _emoji_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(3, 10)):
        parts.append(rng.choice(_EMOJI) * rng.choice([1, 1, 1, 2, 3]))
        parts.append(rng.choice(["", " ", " ", "!", " " + rng.choice(_ENGLISH) + " "]))
    return "".join(parts)


def _odd_whitespace(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(4, 12)):
        parts.append(rng.choice(_ENGLISH + _CONTRACTIONS))
        parts.append(rng.choice(_ODD_WHITESPACE))
    return "".join(parts)


def _numbers(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:  # a long run of digits
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(10, 120)))
    if kind == 1:
        return f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1:8080"
    if kind == 2:
        return f"{rng.random() * 10 ** rng.randint(0, 12):,.4f} and -{rng.random():.2e}"
    if kind == 3:
        return f"0x{rng.getrandbits(64):016X} {rng.getrandbits(32):b}"
    return f"+1 ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


def _special_text(rng: random.Random) -> str:
    return rng.choice(
        [
            "<|endoftext|>",
            " <|endoftext|> ",
            "end.<|endoftext|>Start",
            "<|endoftext|><|endoftext|>",
            "<|endoftext",
            "|>",
            "<|startoftext|>",
            "\n<|endoftext|>\n",
        ]
    )


_PARAGRAPHS: list[tuple[Callable[[random.Random], str], int]] = [
    (_prose, 40),
    (_python_code, 8),
    (_c_code, 5),
    (_script_text, 20),
    (_emoji_text, 8),
    (_odd_whitespace, 8),
    (_numbers, 8),
    (_special_text, 3),
]


def _paragraph(rng: random.Random) -> str:
    makers, weights = zip(*_PARAGRAPHS, strict=True)
    return rng.choices(makers, weights=weights)[0](rng)


def varied_documents(total_bytes: int, *, seed: int = 0, doc_bytes: int = 4096) -> list[str]:
    """Documents of about `doc_bytes` UTF-8 bytes each, about `total_bytes` in all."""
    rng = random.Random(seed)
    docs: list[str] = []
    size = 0
    while size < total_bytes:
        parts: list[str] = []
        doc_size = 0
        while doc_size < doc_bytes:
            part = _paragraph(rng)
            parts.append(part)
            doc_size += len(part.encode("utf-8")) + 2
        doc = rng.choice(["\n\n", "\n", " ", "\r\n\r\n"]).join(parts)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def varied_text(total_bytes: int, *, seed: int = 0) -> str:
    """One string of about `total_bytes` UTF-8 bytes of varied text."""
    return "\n\n".join(varied_documents(total_bytes, seed=seed))
