"""Which language a viewer gets by default: `?lang=`, else the best of their
Accept-Language, else their country's (from a CDN's geo header, mapped in `[languages]`),
else the stream's first. The master playlist marks it DEFAULT=YES; a response chosen by
these headers says so in `Vary`."""

from __future__ import annotations

from aiohttp import web

from streamd.config import LanguagesConfig
from streamd.model.language import match


def accept_language(header: str) -> list[str]:
    """An Accept-Language header's tags, most wanted first (RFC 9110 12.5.4); q=0 excluded."""
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(header.split(",")):
        tag, *params = item.strip().split(";")
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


def preferred(request: web.Request, available: list[str], config: LanguagesConfig) -> str | None:
    """The viewer's language among `available` (None when the stream has none)."""
    if not available:
        return None
    asked = request.query.get("lang")
    if asked and (found := match(asked, available)):
        return found
    for tag in accept_language(request.headers.get("Accept-Language", "")):
        if found := match(tag, available):
            return found
    if config.geo_header and (country := request.headers.get(config.geo_header)):
        lang = config.region_language(country)
        if lang and (found := match(lang, available)):
            return found
    return available[0]


def vary(config: LanguagesConfig) -> str:
    """The request headers a language choice depends on."""
    return "Accept-Language" + (f", {config.geo_header}" if config.geo_header else "")
