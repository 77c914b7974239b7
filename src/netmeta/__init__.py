"""netmeta: network metadata collector."""

import importlib.util
import sys

# pyarrow tries `import dateutil.relativedelta` whenever it converts a Python value, and a
# failed import is retried from the file system every time (about 0.1 ms per compute call
# on the hot path). When dateutil is not installed, record that once.
if "dateutil" not in sys.modules and importlib.util.find_spec("dateutil") is None:
    sys.modules["dateutil"] = None  # type: ignore[assignment]
    sys.modules["dateutil.relativedelta"] = None  # type: ignore[assignment]
