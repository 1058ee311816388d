# shellcheck shell=bash
# What km needs from the machine, found or installed: sourced by scripts/test and scripts/quickstart.
#
# On Debian and Ubuntu the missing packages are installed with apt (through sudo when not root)
# without ever starting the system's sshd on port 22: km runs a private sshd per sandbox. On
# other systems the exact packages to install are printed and the script stops.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages missing for the given tools (one "tool=package" word each).
missing_packages() {
  local wanted pair tool package
  wanted=()
  for pair in "$@"; do
    tool=${pair%%=*}
    package=${pair#*=}
    if [ "${tool#/}" != "$tool" ]; then
      [ -x "$tool" ] && continue
    elif command -v "$tool" >/dev/null 2>&1; then
      continue
    fi
    case " ${wanted[*]-} " in *" $package "*) ;; *) wanted+=("$package") ;; esac
  done
  printf '%s\n' "${wanted[@]-}"
}

# Installs Debian packages, keeping openssh-server's service from starting.
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: these are missing and this is not a Debian/Ubuntu machine: $*" >&2
    echo "hint: install their equivalents with your package manager (OpenSSH's client and server," >&2
    echo "      bubblewrap, shellcheck, util-linux, python3 with pip), then run this again" >&2
    exit 1
  fi
  echo "Installing with apt: $*" >&2
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  as_root mkdir -p /etc/ssh
  as_root touch /etc/ssh/sshd_not_to_be_run
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ "$policy_added" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
}

# OpenSSH's client and server, and bubblewrap: what the local platform runs.
ensure_openssh() {
  local packages
  mapfile -t packages < <(missing_packages ssh=openssh-client ssh-keygen=openssh-client \
    scp=openssh-client sftp=openssh-client /usr/sbin/sshd=openssh-server bwrap=bubblewrap)
  [ -z "${packages[*]-}" ] || apt_install "${packages[@]}"
}

# Everything the test suite uses besides Rust: OpenSSH, bubblewrap, shellcheck, util-linux
# (unshare, mount, setpriv, runuser), useradd, coreutils' mkfifo and sha256sum, binutils'
# objdump, python3 with moto's server and boto3.
ensure_test_tools() {
  local packages
  mapfile -t packages < <(missing_packages ssh=openssh-client ssh-keygen=openssh-client \
    scp=openssh-client sftp=openssh-client /usr/sbin/sshd=openssh-server \
    bwrap=bubblewrap runuser=util-linux useradd=passwd \
    shellcheck=shellcheck unshare=util-linux setpriv=util-linux mount=mount \
    mkfifo=coreutils sha256sum=coreutils perl=perl python3=python3 bash=bash \
    objdump=binutils)
  [ -z "${packages[*]-}" ] || apt_install "${packages[@]}"
  if ! python3 -c 'import moto.server, boto3' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      apt_install python3-pip
    fi
    echo "Installing moto's server with pip" >&2
    python3 -m pip install --quiet 'moto[server]' ||
      python3 -m pip install --quiet --break-system-packages 'moto[server]'
  fi
}
