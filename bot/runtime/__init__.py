"""How examdesk runs: the CLI, the server, the scheduler, leader election, the notifier."""
