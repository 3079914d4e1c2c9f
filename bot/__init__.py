"""The Slack app, web server, scheduler wiring and the `examdesk` CLI."""
