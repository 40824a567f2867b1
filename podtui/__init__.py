"""podtui: GPU pods serving GGUF models, reached through verified SSH tunnels."""

__version__ = "0.1.0"
