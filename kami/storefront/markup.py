"""Product descriptions: the merchant writes Markdown, the buyer gets a small, safe subset of
HTML. Markdown passes raw HTML through, so everything it produces is cleaned by nh3 (an
allow-list): no script, no event attributes, no javascript: links, no images from elsewhere."""
from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

TAGS = {"p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
        "h2", "h3", "h4", "a"}
ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}


def description_html(text: str) -> SafeString:
    html = markdown.markdown(text or "", output_format="html")
    cleaned = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                        link_rel="noopener nofollow")
    return mark_safe(cleaned)  # noqa: S308 (nh3 allow-list output)


NOTICE_TAGS = {"p", "br", "strong", "em", "b", "i", "code", "a"}


def notice_html(text: str) -> SafeString:
    """The merchant's notice banner in Markdown: inline emphasis, code and links only."""
    html = markdown.markdown(text or "", output_format="html")
    cleaned = nh3.clean(html, tags=NOTICE_TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                        link_rel="noopener nofollow")
    return mark_safe(cleaned)  # noqa: S308 (nh3 allow-list output)
