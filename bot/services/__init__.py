"""Domain services: each action takes a session and plain values, changes the registers in one
transaction, appends the audit event and queues the messages to post. No Slack imports here."""
