"""`python -m linerec.cli`, as the tests and benches run the command."""

from linerec.cli import main

raise SystemExit(main())
