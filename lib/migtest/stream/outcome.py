"""What a tampering proxy made of a migration: per connection, and in all.

A :class:`RewriteReport` says what one connection's rewriter followed;
:func:`tamper_outcome` turns the fault's changes and every connection's
report into a test's answer: the changes, a CANCEL where the fault cannot
apply, or an error where the proxy could not do what the test needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..errors import Unavailable
from .tamper import Change, NothingToStrike, PageFault, TamperError


@dataclass
class RewriteReport:
    """What a rewriter made of one connection's stream."""

    #: Why the stream's pages cannot be rewritten (TLS, RDMA, ...), if so.
    not_applicable: Optional[str] = None
    #: Where the rewriter could not follow a stream it should know, if so.
    misread: Optional[str] = None
    #: Whether it followed the stream to the end of the last RAM section.
    reached_last_ram_section: bool = False
    ram_sections: int = 0
    #: RAM records by kind, every block.
    records: Counter[str] = field(default_factory=Counter)
    #: The RAM blocks MEM_SIZE listed, with their lengths.
    blocks: Dict[str, int] = field(default_factory=dict)
    #: Whether the source advised postcopy (POSTCOPY_ADVISE).
    postcopy_advised: bool = False
    #: The stream offset of the switch to postcopy (the PACKAGED command), if it came.
    postcopy_at: Optional[int] = None

    def describe(self) -> str:
        if self.not_applicable:
            return f"not applicable: {self.not_applicable}"
        how = "to the end of the last" if self.reached_last_ram_section else "not to the last"
        records = ", ".join(f"{n} {kind}" for kind, n in self.records.items()) or "none"
        text = f"followed {how} RAM section ({self.ram_sections} RAM sections; records: {records})"
        if self.postcopy_at is not None:
            text += f", switched to postcopy at byte {self.postcopy_at}"
        elif self.postcopy_advised:
            text += ", postcopy advised but never switched to"
        return text + (f"; misread {self.misread}" if self.misread else "")


#: Records a fault does not change, and where they say the pages went.
ELSEWHERE = {
    "compressed": "compressed (COMPRESS_PAGE)",
    "xbzrle": "XBZRLE-encoded",
    "multifd-flush": "sent over multifd channels",
}


def tamper_outcome(fault: PageFault, reports: Sequence[RewriteReport]) -> List[Change]:
    """What ``fault`` changed in a migration whose connections' rewriters made ``reports``.

    :raise Unavailable: no connection carried a stream the rewriter could
        rewrite (TLS, RDMA...), or the pages went where it does not
        change them (multifd channels, compressed or XBZRLE records): the
        fault does not apply, a CANCEL.
    :raise TamperError: a rewriter could not follow a stream it should,
        one that struck stopped before the last RAM section (a later copy
        of the page could have gone unseen), or the fault found nothing to
        strike: the test cannot tell.  :class:`NothingToStrike` if the
        guest's pages left it nothing to change (another migration may).
    """
    listed = "; ".join(f"connection {n}: {r.describe()}" for n, r in enumerate(reports, 1))
    misread = [r.misread for r in reports if r.misread]
    if misread:
        raise TamperError(f"the rewriter could not follow the stream: {misread[0]}")
    if fault.changes:
        if not any(r.reached_last_ram_section for r in reports):
            raise TamperError(
                f"{fault.name}: the rewriter did not follow the stream to its last RAM "
                f"section, where a later copy of the changed page could have come: {listed}"
            )
        return list(fault.changes)
    if reports and all(r.not_applicable for r in reports):
        raise Unavailable(f"{fault.name}: not applicable: {listed}", expected=False)
    elsewhere = {ELSEWHERE[kind] for r in reports for kind in ELSEWHERE if r.records[kind]}
    if any("multifd" in (r.not_applicable or "") for r in reports):
        elsewhere.add(ELSEWHERE["multifd-flush"])
    if elsewhere:
        raise Unavailable(
            f"{fault.name}: not applicable: pages were {' and '.join(sorted(elsewhere))}, "
            f"which the rewriter does not change; {listed}",
            expected=False,
        )
    reason = fault.nothing_to_strike()
    if reason is not None:
        raise NothingToStrike(f"{fault.describe()}: nothing struck: {reason}; {listed}")
    raise TamperError(
        f"{fault.describe()}: nothing struck ({fault.seen['earlier']} pages of the range "
        f"before the last RAM section, {fault.seen['final']} in it or after the switch to "
        f"postcopy, {fault.seen['postcopy']} of them after); {listed or 'no connection'}"
    )
