"""remote-agent: the daemon inside the pod. Standard library only on its start path; it never
imports podtui, textual or paramiko (test-enforced)."""

__version__ = "0.1.0"
