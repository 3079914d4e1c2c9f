"""The Slack front door: the Bolt app, its middleware, listeners and Block Kit views."""
