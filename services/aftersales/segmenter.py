"""Chinese word segmentation for complaint routing: jieba on a trimmed dictionary.

jieba's full dictionary (349,046 words) costs ~89 MB of memory once loaded; the words
used at least ``min_frequency`` times in its corpus (105,157 at 10) cost ~17 MB and still
split everyday complaint Chinese into words. Rarer words that occur in the policy's
keyword phrases (开胶, 踢皮球) are kept too, so a keyword is never split into characters.
The trimmed dictionary is written once to the temporary directory, where jieba also
keeps its own cache of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import jieba

Segment = Callable[[str], Sequence[str]]

_CJK = re.compile(r"[\u3400-\u9fff]+")

DEFAULT_MIN_FREQUENCY = 10


def _trimmed_dictionary(min_frequency: int, keep_within: str) -> Path:
    source = Path(jieba.__file__).with_name("dict.txt")
    kept = hashlib.sha256(keep_within.encode()).hexdigest()[:12]
    name = f"huitou-jieba-{jieba.__version__}-{min_frequency}-{kept}.txt"
    target = Path(tempfile.gettempdir()) / name
    if target.exists():
        return target
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as out, source.open(encoding="utf-8") as lines:
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and (int(parts[1]) >= min_frequency or parts[0] in keep_within):
                out.write(line)
    os.replace(partial, target)
    return target


@cache
def chinese_segmenter(keep_within: str = "", min_frequency: int = DEFAULT_MIN_FREQUENCY) -> Segment:
    """Split Chinese text into dictionary words (no HMM guesses of unknown words).

    ``keep_within``: the policy's keyword phrases joined by "|": the dictionary words in
    them are kept whatever their frequency, and each Chinese phrase is a word itself.
    """
    logging.getLogger("jieba").setLevel(logging.WARNING)
    dictionary = _trimmed_dictionary(min_frequency, keep_within)
    tokenizer = jieba.Tokenizer(dictionary=str(dictionary))
    tokenizer.initialize()
    for phrase in set(keep_within.split("|")):
        # The policy's Chinese keyword phrases stay whole ("防盗扣", "不保暖").
        if 2 <= len(phrase) <= 6 and _CJK.fullmatch(phrase):
            tokenizer.add_word(phrase)

    def segment(text: str) -> Sequence[str]:
        return tokenizer.lcut(text, HMM=False)  # type: ignore[no-any-return]

    return segment
