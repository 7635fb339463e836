"""`python -m gonka_operator.simulator --port 9200 --generation 2025-08`."""

from gonka_operator.simulator import main

raise SystemExit(main())
