# Agent models arrive with the agents issue.
