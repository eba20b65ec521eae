"""``python -m bt_helpers <command>``: see ``bt_helpers.cli``."""

import sys

from bt_helpers.cli import main

if __name__ == "__main__":
    sys.exit(main())
