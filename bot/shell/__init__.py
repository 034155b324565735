"""`quorum shell`: the real Quorum in a terminal, with Slack answered in-process."""
