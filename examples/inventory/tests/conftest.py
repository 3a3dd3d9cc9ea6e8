import sys
from pathlib import Path

# Let the tests import the package without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
