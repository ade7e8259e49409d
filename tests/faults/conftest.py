"""The faults suite's bookkeeping: each test records the fault it tries, and a table is printed.

A test takes the ``fault`` fixture, says what it injects and what should happen, and
notes what it saw::

    def test_corrupt_jpeg(fault):
        fault("corrupt JPEG in the source", expected="ingest stops naming the file")
        ...
        fault.saw(str(error))

"held" in the table is the test's own outcome (passed = the expected behaviour held),
so a fault that stops being handled shows up as NO in the summary, not only as a
failure further up. The hooks live here, not in tests/conftest.py: pytest calls
``pytest_terminal_summary`` on every registered plugin, and a collected conftest is one,
so the table prints whether pytest runs ``tests/`` or only ``tests/faults``.
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

_ROW_PROPERTY = "fault_record"
_ITEM_RECORD = pytest.StashKey["FaultRecord"]()
_MAX_OBSERVED = 400
TABLE_MIN_WIDTH = 150


@dataclasses.dataclass
class FaultRecord:
    """One row of the summary: the fault, what should happen, what did, and whether it held."""

    test_id: str
    fault: str = ""
    expected: str = ""
    observed: list[str] = dataclasses.field(default_factory=list)
    outcome: str = "not run"
    temporary_root: str = ""

    def __call__(self, fault: str, *, expected: str) -> FaultRecord:
        self.fault = fault
        self.expected = expected
        return self

    def saw(self, observation: object) -> None:
        """Notes what the system did (an error message, a version, a count)."""
        text = " ".join(str(observation).split())
        if self.temporary_root:
            text = text.replace(self.temporary_root, "<tmp>")
        if len(text) > _MAX_OBSERVED:
            text = text[: _MAX_OBSERVED - 3] + "..."
        self.observed.append(text)

    @property
    def held(self) -> str:
        return {"passed": "yes", "skipped": "skipped", "xfailed": "NO (known)"}.get(
            self.outcome, "NO"
        )


# Rows by test id, filled from the reports in the process that prints the summary.
_ROWS: dict[str, FaultRecord] = {}


@pytest.fixture
def fault(request, tmp_path_factory) -> FaultRecord:
    """The summary row of this test; call it to name the fault, ``.saw()`` to note results."""
    record = FaultRecord(
        test_id=request.node.nodeid, temporary_root=str(tmp_path_factory.getbasetemp())
    )
    request.node.stash[_ITEM_RECORD] = record
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    record = item.stash.get(_ITEM_RECORD, None)
    if record is None:
        return report
    if hasattr(report, "wasxfail") and report.skipped:
        # A known gap, kept visible: the test shows what should happen and fails today.
        record.outcome = "xfailed"
        record.saw(f"known gap: {report.wasxfail}")
    elif report.skipped:
        record.outcome = "skipped"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        record.saw(f"skipped: {reason}")
    elif report.failed:
        record.outcome = "failed"
        if call.excinfo is not None:
            record.saw(f"test failed in {report.when}: {call.excinfo.exconly().splitlines()[0]}")
    elif report.when == "call":
        record.outcome = "passed"
    # The row travels on the report: under pytest-xdist the test runs in a worker process and
    # only its reports reach the process that prints the summary.
    report.user_properties.append((_ROW_PROPERTY, dataclasses.asdict(record)))
    return report


def pytest_runtest_logreport(report):
    rows = [value for name, value in report.user_properties if name == _ROW_PROPERTY]
    if rows:
        _ROWS[report.nodeid] = FaultRecord(**rows[-1])  # the last phase has the final outcome


@pytest.fixture(scope="session")
def prepared_source(tmp_path_factory):
    """A tiny prepared synthetic_pets TFDS source; tests damage copies of it, never this."""
    import faultkit

    return faultkit.prepare_source(tmp_path_factory.mktemp("source") / "tfds")


@pytest.fixture(scope="session")
def good_dataset(prepared_source, tmp_path_factory):
    """The clean ingest of ``prepared_source``: what a damaged run is compared with."""
    from components.data.ingest import ingest_dataset

    output = tmp_path_factory.mktemp("good") / "dataset"
    ingest_dataset(prepared_source, str(output))
    return output


def _table(records: list[FaultRecord], width: int) -> list[str]:
    held_width = 7
    # fault | expected | observed | held, with " | " between columns.
    text_width = max(60, width - held_width - 9)
    widths = [text_width * 26 // 100, text_width * 34 // 100]
    widths.append(text_width - sum(widths))
    widths.append(held_width)
    header = ["fault", "expected", "observed", "held"]
    rule = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    for record in records:
        cells = [
            record.fault or record.test_id,
            record.expected,
            " / ".join(record.observed) or "(nothing noted)",
            record.held,
        ]
        wrapped = [textwrap.wrap(cell, w) or [""] for cell, w in zip(cells, widths, strict=True)]
        for row in range(max(len(column) for column in wrapped)):
            parts = [
                (column[row] if row < len(column) else "").ljust(w)
                for column, w in zip(wrapped, widths, strict=True)
            ]
            lines.append(" | ".join(parts).rstrip())
        lines.append(rule)
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = list(_ROWS.values())
    if not records:
        return
    held = [record.held for record in records]
    title = f"fault injection summary: {held.count('yes')} held, {held.count('NO')} did not"
    if held.count("NO (known)"):
        title += f", {held.count('NO (known)')} known gaps (xfail)"
    if held.count("skipped"):
        title += f", {held.count('skipped')} skipped"
    terminalreporter.write_sep("=", title)
    # CI logs do not wrap, so the table keeps a readable width even when stdout is no terminal.
    for line in _table(records, max(TABLE_MIN_WIDTH, terminalreporter._tw.fullwidth)):
        terminalreporter.write_line(line)
