#!/usr/bin/env bash
# The console's browser tests (tests/test_console.py) drive Debian's Chromium through Playwright
# (installed by `pip install -e '.[test]'`). Install the browser with apt when it is missing;
# never `playwright install` (no browser downloads). .ci/run calls this; CI runs as root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
