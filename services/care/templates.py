"""Message templates per kind and locale, checked against the domain's tone rules at load.

A template names only the variables care provides for its kind, and never
breaks a tone rule: a bad template stops start-up with a message naming the
kind, the locale and the problem.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.care.policy import KINDS, CarePolicy, Kind

DEFAULT_TEMPLATES_FILE = Path(__file__).with_name("templates.json")

COMMON_VARIABLES = frozenset({"store_id", "staff_id"})
VARIABLES: dict[Kind, frozenset[str]] = {
    "welcome": frozenset(),
    "first_follow_up": frozenset(),
    "purchase_callback": frozenset({"order_id"}),
    "referral_thanks": frozenset({"role"}),
    "spend_milestone": frozenset({"milestone", "currency"}),
    "top_spender_visit": frozenset({"year"}),
    "birthday": frozenset(),
    "holiday": frozenset({"holiday"}),
    "season_change": frozenset({"season"}),
    "win_back": frozenset(),
    "cadence": frozenset({"value_class"}),
    "tier_upgrade": frozenset({"tier"}),
    "satisfaction_survey": frozenset({"ticket_id"}),
    "follow_up": frozenset({"topic"}),
}
"""The variables care fills for each kind (besides the common ones)."""


class TemplateError(SystemExit):
    """A template is missing or breaks a rule: stops start-up with a clear message."""


@dataclass(frozen=True)
class Template:
    """One message text for a kind in a locale."""

    kind: Kind
    locale: str
    text: str

    @property
    def template_id(self) -> str:
        """The id the messaging gateway looks the text up by."""
        return f"care.{self.kind}.{self.locale}"

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text with its variables filled in (for previews)."""
        return self.text.format_map({k: str(v) for k, v in variables.items()})


def placeholders(text: str) -> set[str]:
    """The variable names a template text uses."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:
        raise ValueError(f"not a valid template ({error})") from None


def tone_problems(kind: Kind, text: str, policy: CarePolicy) -> list[str]:
    """The tone rules a kind's text breaks, each with the offending word."""
    lowered = text.casefold()
    return [
        f"{rule.rule} (found {word!r})"
        for rule in policy.tone_rules
        if kind in rule.kinds
        for word in rule.forbidden
        if word.casefold() in lowered
    ]


class TemplateCatalogue:
    """All templates, validated: every kind has one in the default locale."""

    def __init__(self, templates: Mapping[tuple[Kind, str], Template], default_locale: str) -> None:
        self._templates = dict(templates)
        self._default_locale = default_locale

    def for_kind(self, kind: Kind, locale: str) -> Template:
        """The kind's template in a locale, or in the default locale when there is none."""
        return self._templates.get((kind, locale)) or self._templates[(kind, self._default_locale)]

    def __len__(self) -> int:
        return len(self._templates)


def check_templates(raw: Mapping[str, Any], policy: CarePolicy) -> TemplateCatalogue:
    """Validate raw templates ({kind: {locale: text}}); raise TemplateError naming each problem."""
    problems: list[str] = []
    templates: dict[tuple[Kind, str], Template] = {}
    for kind_name, by_locale in raw.items():
        if kind_name not in KINDS:
            problems.append(f"{kind_name}: not a kind of outreach (kinds: {', '.join(KINDS)})")
            continue
        kind: Kind = kind_name
        if not isinstance(by_locale, Mapping):
            problems.append(f"{kind}: must map locales to texts")
            continue
        for locale, text in by_locale.items():
            where = f"{kind}.{locale}"
            if locale not in policy.locales:
                problems.append(f"{where}: locale not in policy locales {list(policy.locales)}")
                continue
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{where}: must be a non-empty text")
                continue
            try:
                unknown = placeholders(text) - VARIABLES[kind] - COMMON_VARIABLES
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            if unknown:
                problems.append(f"{where}: unknown variables {sorted(unknown)}")
            problems.extend(
                f"{where}: breaks the rule {p}" for p in tone_problems(kind, text, policy)
            )
            templates[(kind, locale)] = Template(kind, locale, text)
    for kind in KINDS:
        if policy.moment(kind).enabled and (kind, policy.default_locale) not in templates:
            problems.append(f"{kind}: no template in the default locale {policy.default_locale}")
    if problems:
        raise TemplateError("care templates: " + "; ".join(problems))
    return TemplateCatalogue(templates, policy.default_locale)


def load_templates(path: Path | None, policy: CarePolicy) -> TemplateCatalogue:
    """Templates from a JSON file (the bundled one by default), validated."""
    path = path or DEFAULT_TEMPLATES_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise TemplateError(f"care templates {path}: {error}") from None
    if not isinstance(raw, dict):
        raise TemplateError(f"care templates {path}: must be an object of kinds")
    try:
        return check_templates(raw, policy)
    except TemplateError as error:
        raise TemplateError(f"{error} ({path})") from None
