"""Math rendered when the site is built: arithmatex's TeX spans become MathML, so the pages need no script and no
network to show formulas (browsers render MathML natively).

``pymdownx.arithmatex`` (``generic: true``) leaves inline math as ``<span class="arithmatex">\\(...\\)</span>`` and
display math as ``<div class="arithmatex">\\[...\\]</div>``, with the TeX HTML-escaped. :func:`render` replaces each
with the ``<math>`` element ``latex2mathml`` makes of it, keeping the TeX as an annotation (copying a formula gives
its source). A formula it cannot convert stops the build with the page and the TeX, rather than leaving raw TeX on
the page.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

__all__ = ["MathConversionError", "render", "to_mathml"]

ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<display>.*?)\\\])\s*</(?P=tag)>',
    re.S,
)


# latex2mathml lays out align* as a table but treats aligned's "&" as a letter; the two mean the same in a display.
ALIGNED = re.compile(r"\\(begin|end)\{aligned\}")


class MathConversionError(ValueError):
    """A formula latex2mathml cannot convert."""


def to_mathml(tex: str, *, display: bool) -> str:
    """One formula (plain TeX, not HTML-escaped) as a ``<math>`` element."""
    source = tex.strip()
    try:
        mathml = convert(ALIGNED.sub(r"\\\1{align*}", source), display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises its own exception types and plain ones
        raise MathConversionError(f"cannot convert {source!r} to MathML: {exc}") from exc
    if "<mi>&</mi>" in mathml or "<merror" in mathml:
        raise MathConversionError(f"cannot convert {source!r} to MathML: an alignment or command it does not know")
    if "<semantics>" in mathml:
        return mathml
    annotation = f'<annotation encoding="application/x-tex">{html.escape(source, quote=False)}</annotation>'
    start = mathml.index(">") + 1
    end = mathml.rindex("</math>")
    return f"{mathml[:start]}<semantics>{mathml[start:end]}{annotation}</semantics></math>"


def render(page_html: str, where: str = "") -> str:
    """Replace every arithmatex span and div of a page's HTML by MathML."""

    def replace(match: re.Match[str]) -> str:
        display = match.group("display") is not None
        tex = html.unescape(match.group("display") if display else match.group("inline"))
        try:
            mathml = to_mathml(tex, display=display)
        except MathConversionError as exc:
            raise MathConversionError(f"{where}: {exc}") from None
        return f'<div class="arithmatex">{mathml}</div>' if display else f'<span class="arithmatex">{mathml}</span>'

    return ARITHMATEX.sub(replace, page_html)
