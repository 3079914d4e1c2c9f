"""Notices to candidates: outbox fan-out, channels (in-app, SMS, e-mail) and dispatch."""
