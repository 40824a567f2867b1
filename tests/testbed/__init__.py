"""The test bed: real parts (OpenSSH sshd, llama-server, tiny GGUF models, address-space limits).

Used by tests/conftest.py, by scripts/ and by bench/. Nothing here is a mock.
"""
