"""Build tmate-ssh-server as a static musl binary from pinned, verified sources."""

__version__ = "0.1.0"
