#!/bin/sh
# Installs the Debian packages of a list whose command is missing. Each line of the list is
# "command package"; lines starting with # are comments. As root it runs apt-get; elsewhere it
# uses password-less sudo (CI runners have it); without either it names what to install.
set -eu
list=$1
missing=""
while read -r command package; do
  case "$command" in ''|'#'*) continue ;; esac
  command -v "$command" >/dev/null 2>&1 || missing="$missing $package"
done < "$list"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "the tests need these Debian packages:$missing; install them (sudo apt-get install$missing)" >&2
  exit 2
fi
# shellcheck disable=SC2086 # the package list is meant to split
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
