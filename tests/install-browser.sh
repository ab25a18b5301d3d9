#!/usr/bin/env bash
# The console's browser tests (tests/test_console.py) drive Debian's Chromium through Playwright
# (installed by `pip install -e '.[test]'`). Install the browser with apt when it is missing;
# never `playwright install` (no browser downloads). .ci/run calls this; CI runs as root.
# It also fetches axe-core from the npm registry for the accessibility tests (tests/axe.py).
set -euo pipefail
# axe-core (pinned version and sha256) for the accessibility tests, into ~/.cache/roomscope-tests/.
python "$(dirname "$0")/axe.py"
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
