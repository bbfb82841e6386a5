"""Public status pages run by a vendor: Atlassian Statuspage."""
