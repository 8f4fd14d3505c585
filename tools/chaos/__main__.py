"""python -m tools.chaos: see tools/chaos/__init__.py."""

from tools.chaos.harness import main

main()
