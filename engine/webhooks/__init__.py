"""Inbound webhooks: what providers tell Touchflow about the messages it sent.

`engine.webhooks.sendgrid` verifies, parses and applies SendGrid's signed Event Webhook (no web
framework: it takes bytes, headers and a Connection); `engine.webhooks.app` is the ASGI face.
Nothing is imported here so that using the pure module never loads Starlette.
"""
