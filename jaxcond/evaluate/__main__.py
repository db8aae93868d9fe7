"""`python -m jaxcond.evaluate` (jaxcond.evaluate.program)."""
import sys

from jaxcond.evaluate.program import main

if __name__ == "__main__":
  sys.exit(main())
