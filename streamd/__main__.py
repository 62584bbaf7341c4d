"""`python -m streamd`: the same as the `streamd` command."""

from streamd.cli import main

raise SystemExit(main())
