"""Rendering: templates + context → subject, HTML and text. Sandboxed; customer data is never source."""

from engine.render.email import (
    CONTEXT_NAMES,
    EmailRenderer,
    RenderedEmail,
    RenderError,
    inline_template_error,
    locale_chain,
    render_inline,
)
from engine.render.limits import DEFAULT_LIMITS, RenderLimits

__all__ = [
    "CONTEXT_NAMES",
    "DEFAULT_LIMITS",
    "EmailRenderer",
    "RenderError",
    "RenderLimits",
    "RenderedEmail",
    "inline_template_error",
    "locale_chain",
    "render_inline",
]
