"""The exam operations as plain Python: no Slack here.

Every front door (Slack, the `examdesk run` CLI, the tests) calls ``runner.execute`` or
``router.dispatch`` and gets the same ``Reply``.
"""
