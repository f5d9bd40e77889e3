"""The demo: ``python -m sqlite_session_safe`` (see :mod:`.faces.demo`)."""

import sys

from .faces.demo import main

if __name__ == "__main__":
    sys.exit(main())
