"""`python -m tests.mutants`: the mutation run (`run.py`), as `nox -s mutation` calls it."""

from .run import main

raise SystemExit(main())
