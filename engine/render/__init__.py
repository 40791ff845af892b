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

__all__ = [
    "CONTEXT_NAMES",
    "EmailRenderer",
    "RenderError",
    "RenderedEmail",
    "inline_template_error",
    "locale_chain",
    "render_inline",
]
