"""Work above the providers and SSH: pod lifecycle (pods.py), pre-flight fit (preflight.py)."""
