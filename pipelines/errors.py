"""Error types that decide how a failure is treated.

`DataError` means the input is bad: retrying cannot help, so the orchestration layer turns it
into a non-retryable task failure. Anything else (I/O, a service down) is infrastructure and
may be retried. Every message names the file or table, the column and the rule that failed.
"""


class DataError(ValueError):
    """Bad input data: corrupt or missing files, schema drift, nulls, duplicates, leakage."""


class SpecError(ValueError):
    """A pipeline spec that does not load; the message names the file and the field."""


class ValidationFailed(DataError):
    """A Great Expectations suite failed; the message names the suite, column and expectation."""


class LineageError(RuntimeError):
    """A reference that cannot be resolved or a lineage record that does not match."""
