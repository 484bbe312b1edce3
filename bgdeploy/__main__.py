"""`python -m bgdeploy` runs the CLI."""

from bgdeploy.cli import main

raise SystemExit(main())
