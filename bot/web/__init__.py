"""The HTTP routes: Slack's door, the candidates' page, Twilio's status callbacks, health."""
