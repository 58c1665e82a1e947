"""``python -m bayesdsm.simulate``."""

from bayesdsm.simulate._io import main

raise SystemExit(main())
