#!/usr/bin/env bash
# System packages the test bed needs: OpenSSH (server and client), a compiler and cmake for the
# llama-server build, tmux for the terminal test, venv for Debian's python3. Installs only what is missing.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v tmux >/dev/null || need+=(tmux)
command -v curl >/dev/null || need+=(curl)
# Debian's own python3 ships without venv/ensurepip (pyenv and python.org builds have them).
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# Debian's openssh-server package starts a system sshd on port 22; the test bed runs its own.
mkdir -p /run/sshd 2>/dev/null || true
