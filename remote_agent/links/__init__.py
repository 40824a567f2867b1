"""SSH links of an RPC cluster (issue 18): the server pod's agent owns one OpenSSH forward per backend,
`ssh -L 127.0.0.1:LOCAL:127.0.0.1:RPC_PORT` with host keys podtui verified out of band, and each backend's
agent authorizes the cluster's key for that one forward (RPC.md §5.4, facts 18-19).

- spec.py: what `cluster.link` carries (LinkSpec), checked.
- command.py: the ssh command line of one link.
- supervisor.py: LinkSet, the link processes, restarted with backoff; their state for `status`.
- authorized.py: the backend's authorized_keys line for the cluster key (`cluster.authorize`).
- methods.py: the agent methods (a mixin of the daemon's Agent).
"""
