# AgentSession arrives with the live sessions issue.
