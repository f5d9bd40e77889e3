"""``python -m sqlite_session_safe.faces.cli``: the command-line tool."""

from . import main

raise SystemExit(main())
