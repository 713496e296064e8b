"""Notification adapters: Slack incoming webhooks and signed JSON webhooks."""
