"""Evidence for a complaint's category: the words of its text, weighed per category.

A text becomes features: English stems and Chinese words, each negated word marked
(``¬work`` in "does not work", ``¬保暖`` in "不保暖"), adjacent pairs (``积分_过期``), a
question mark feature, and clauses before a "but" counting half. Keyword phrases of the
policy go through the same steps and seed the evidence; staff corrections add lessons.
A category's score is the sum, over the features with any evidence, of how much more
often the feature was seen for that category than for an average one (log odds).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

import snowballstemmer

from services.aftersales.segmenter import Segment
from shared.contracts import ComplaintCategory
from shared.redaction import EMAIL, ERASED, ID_NUMBER, NAME, PHONE, redact

Features = Mapping[str, float]

QUESTION = "?"
NEGATED = "¬"
SEED_WEIGHT = 2.0
# One correction is an anecdote: a feature learned only from lessons speaks once it has been
# seen in at least MIN_SUPPORT / LESSON_WEIGHT of them.
LESSON_WEIGHT = 0.5
MIN_SUPPORT = 1.0
SMOOTHING = 0.5
BEFORE_CONTRAST = 0.5
NEGATION_SCOPE = 1
# A negated word still says what the text is about ("没有把防盗扣取下来"), at this weight.
NEGATED_BASE = 0.5
# Each Chinese character of a word is weak evidence of its own ("烂" in "腐烂" and "烂了").
CHARACTER = 0.4
CHARACTER_MARK = "字"


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_NEGATORS = _set(
    "not no never without nobody none nothing cannot neither nor "
    "不 没 没有 未 无 别 非 不是 并非 从未 没能 不能 不会 没法 无法 没人 没有人 不了 毫无"
)
_CONTRAST = _set("but however although though yet 但 但是 可是 不过 却 然而 只是")
_QUESTION_WORDS = _set(
    "when how why what whether 吗 呢 么 什么时候 怎么 为什么 多久 是否 能不能 可不可以 怎么办 哪里"
)
_STOPWORDS = _set(
    "a an the i me my mine we our us you your he him his she her it its they them their "
    "this that these those is am are was were be been being do does did have has had "
    "and or of to in on at for from with by as so very too also just then there here "
    "will would should could can may might must shall one any some all about after before "
    "again still even really up down out into over only than "
    "的 了 是 我 我们 你 你们 他 她 它 他们 也 很 都 就 在 和 与 及 又 还 这 那 这个 那个 "
    "个 把 被 给 让 着 过 啊 呀 吧 哦 嗯 啦 一 一个 有 要 说 会 能 对 到 从 里 上 下 "
    "人 说 后 就是 什么 已经 真的 非常 太 "
    "day days week weeks month months year years time times hour hours minute minutes "
    "today yesterday 天 周 月 年 时候 小时 分钟 今天 昨天 时间"
)
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_STOP_CHARACTERS = frozenset(
    "的了是我你他她它们这那个也很都就在和与及又还把被给让着过啊呀吧哦嗯啦一有要说会能对到从里上下人后太不没么吗呢"
)
_REDACTED = re.compile("|".join(re.escape(p) for p in (PHONE, ID_NUMBER, EMAIL, NAME, ERASED)))
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3400-\u9fff]+|[?？]")
_CLAUSE_END = re.compile(r"[,.!;:，。！；：、\n…]+|(?<=[?？])")


@cache
def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


def _words(clause: str, segment: Segment) -> list[str]:
    words: list[str] = []
    for match in _TOKEN.finditer(clause):
        token = match.group()
        if _CJK_RUN.fullmatch(token):
            words.extend(w for w in segment(token) if w.strip())
        elif token in "?？":
            words.append(QUESTION)
        elif token.endswith("n't"):
            words.append("not")
        else:
            words.append(token.removesuffix("'s"))
    return words


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE_END.split(text) if c and c.strip()]


def features(text: str, segment: Segment) -> dict[str, float]:
    """The weighted features of a complaint text (see the module's docstring).

    Personal data says nothing about a route: the text is redacted and the placeholders
    dropped, so the stored (redacted) text gives the same features as the original.
    """
    plain = _REDACTED.sub(" ", redact(text))
    normal = unicodedata.normalize("NFKC", plain).lower()
    clauses = [_words(c, segment) for c in _clauses(normal)]
    last_contrast = max(
        (i for i, words in enumerate(clauses) if any(w in _CONTRAST for w in words)), default=0
    )
    found: dict[str, float] = {}
    stem = _stemmer().stemWord
    for index, words in enumerate(clauses):
        weight = BEFORE_CONTRAST if index < last_contrast else 1.0
        content: list[str] = []
        negate = 0
        for word in words:
            if word == QUESTION or word in _QUESTION_WORDS:
                found[QUESTION] = max(found.get(QUESTION, 0.0), weight)
                if word == QUESTION:
                    continue
            if word in _NEGATORS:
                negate = NEGATION_SCOPE
                continue
            if word in _STOPWORDS or word in _CONTRAST or word.isdigit():
                continue
            base = stem(word) if word.isascii() else word
            if not word.isascii():
                for character in set(word) - _STOP_CHARACTERS:
                    _keep(found, CHARACTER_MARK + character, weight * CHARACTER)
            if negate:
                _keep(found, base, weight * NEGATED_BASE)
                base = NEGATED + base
            content.append(base)
            negate = max(negate - 1, 0)
        for feature in [*content, *(f"{a}_{b}" for a, b in pairwise(content))]:
            _keep(found, feature, weight)
    return found


def _keep(found: dict[str, float], feature: str, weight: float) -> None:
    found[feature] = max(found.get(feature, 0.0), weight)


@dataclass(frozen=True)
class Lesson:
    """What a staff correction teaches: this text's features belong to this category."""

    features: Features
    category: ComplaintCategory


@dataclass(frozen=True)
class Evidence:
    """How often each feature was seen for each category (seed keywords and lessons)."""

    categories: tuple[ComplaintCategory, ...]
    counts: Mapping[str, Mapping[ComplaintCategory, float]]
    lessons: int = 0


@dataclass(frozen=True)
class Scores:
    """Each category's score, and what each feature added to it."""

    total: Mapping[ComplaintCategory, float]
    by_feature: Mapping[ComplaintCategory, Mapping[str, float]] = field(default_factory=dict)

    def ranked(self) -> list[tuple[ComplaintCategory, float]]:
        """Categories from the best score down (ties in the evidence's category order)."""
        return sorted(self.total.items(), key=lambda item: -item[1])


def _added(
    counts: dict[str, dict[ComplaintCategory, float]],
    found: Features,
    category: ComplaintCategory,
    weight: float,
) -> None:
    for feature in found:
        per = counts.setdefault(feature, {})
        per[category] = per.get(category, 0.0) + weight


def _phrase_weights(found: Features) -> dict[str, float]:
    # A phrase is evidence as a whole: its pairs count fully, its single words share the
    # weight ("member day" teaches "member_day" more than "day").
    singles = [f for f in found if "_" not in f and not f.startswith(CHARACTER_MARK)]
    share = 1.0 / len(singles) if len(singles) > 1 else 1.0
    return {f: (1.0 if "_" in f else share) * w for f, w in found.items()}


def seed_evidence(
    keywords: Mapping[ComplaintCategory, Sequence[str]], segment: Segment
) -> Evidence:
    """Evidence from the policy's keyword phrases, each feature of a phrase once."""
    counts: dict[str, dict[ComplaintCategory, float]] = {}
    for category, phrases in keywords.items():
        for phrase in phrases:
            found = features(phrase, segment)
            found.pop(QUESTION, None)  # whether a text asks is learned from lessons only
            for feature, weight in _phrase_weights(found).items():
                _added(counts, {feature: weight}, category, SEED_WEIGHT * weight)
    return Evidence(tuple(keywords), counts)


def with_lessons(evidence: Evidence, lessons: Iterable[Lesson]) -> Evidence:
    """The evidence with these corrections added (each feature of a lesson once)."""
    counts = {feature: dict(per) for feature, per in evidence.counts.items()}
    categories = list(evidence.categories)
    learned = 0
    for lesson in lessons:
        if lesson.category not in categories:
            categories.append(lesson.category)
        words = {f: w for f, w in lesson.features.items() if not f.startswith(CHARACTER_MARK)}
        _added(counts, words, lesson.category, LESSON_WEIGHT)
        learned += 1
    return Evidence(tuple(categories), counts, evidence.lessons + learned)


def score(found: Features, evidence: Evidence) -> Scores:
    """Each category's evidence: what its features say for it (scaled log odds), never against.

    Only what speaks for a category counts, so a text with two problems scores high for
    both and is seen as ambiguous, instead of each problem's words cancelling the other's.
    """
    size = len(evidence.categories)
    unit = math.log(size) if size > 1 else 1.0
    total: dict[ComplaintCategory, float] = dict.fromkeys(evidence.categories, 0.0)
    by_feature: dict[ComplaintCategory, dict[str, float]] = {c: {} for c in evidence.categories}
    for feature, weight in found.items():
        per = evidence.counts.get(feature)
        seen = sum(per.values()) if per else 0.0
        if not per or seen < MIN_SUPPORT:
            continue
        for category in evidence.categories:
            share = (per.get(category, 0.0) + SMOOTHING) / (seen + SMOOTHING * size)
            # In units of the most one feature can add (log of the category count), so
            # thresholds mean the same with 2 categories as with 7.
            added = weight * (math.log(share * size) / unit if size > 1 else 1.0)
            if added > 0:
                total[category] += added
                by_feature[category][feature] = added
    return Scores(total, by_feature)


def strongest(scores: Scores, category: ComplaintCategory, limit: int = 4) -> list[str]:
    """The words that spoke most for a category, as ``word +0.9`` (for the reason).

    Single characters are named only when no word spoke.
    """
    mine = scores.by_feature.get(category, {})
    best = sorted((item for item in mine.items() if item[1] > 0), key=lambda item: -item[1])
    words = [item for item in best if not item[0].startswith(CHARACTER_MARK)] or best
    return [f"{feature} +{added:.1f}" for feature, added in words[:limit]]
