#!/usr/bin/env bash
# Print the path of a Python 3.12+ interpreter: python3.13/python3.12 on PATH (pyenv shims
# included, if they really run), /usr/bin, then pyenv's versions folder. Fail clearly otherwise.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
candidates=()
for name in python3.13 python3.12; do
  p=$(command -v "$name" 2>/dev/null) && candidates+=("$p")
  candidates+=("/usr/bin/$name" "/usr/local/bin/$name")
done
pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for v in $(ls -d "$pyenv_root"/versions/3.1[3-9]* "$pyenv_root"/versions/3.12* 2>/dev/null | sort -rV); do
  candidates+=("$v/bin/python3")
done
for c in "${candidates[@]}"; do
  if [ -x "$c" ] && ok "$c"; then
    "$c" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: Python 3.12 or newer is required (Django 6.1). Install python3.13 or python3.12," >&2
echo "       e.g. 'pyenv install 3.13' or your distribution's python3.13 package." >&2
exit 1
