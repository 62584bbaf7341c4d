"""Matching a viewer's language tag to those a stream has (BCP 47, as HLS's LANGUAGE)."""

from __future__ import annotations


def match(tag: str, available: list[str]) -> str | None:
    """The available language a tag asks for: the same tag, else the same primary language
    (es-MX finds es, es finds es-MX)."""
    tag = tag.strip().lower()
    for lang in available:
        if lang.lower() == tag:
            return lang
    primary = tag.split("-")[0]
    for lang in available:
        if lang.lower().split("-")[0] == primary:
            return lang
    return None


# What players list for the languages most streams carry (EXT-X-MEDIA's NAME), in each.
_NAMES = {
    "ar": "العربية", "de": "Deutsch", "en": "English", "es": "Español", "fr": "Français",
    "hi": "हिन्दी", "it": "Italiano", "ja": "日本語", "ko": "한국어", "nl": "Nederlands",
    "pl": "Polski", "pt": "Português", "ru": "Русский", "sv": "Svenska", "tr": "Türkçe",
    "uk": "Українська", "zh": "中文",
}  # fmt: skip


def display_name(lang: str) -> str:
    """A language's own name for a tag (its primary language's), else the tag."""
    return _NAMES.get(lang.split("-")[0].lower(), lang)
