"""What is in the lake: counts, time range and click-through rates per surface (DuckDB over Parquet)."""

from __future__ import annotations

from typing import Any

import duckdb

from topicfeed.lake import Lake
from topicfeed.settings import Settings


def lake_summary(settings: Settings) -> dict[str, Any]:
    lake = Lake(settings.lake_dir)
    out: dict[str, Any] = {"lake": str(settings.lake_dir)}
    con = duckdb.connect()
    if lake.exists("documents"):
        docs = lake.scan("documents")
        n, partners, first, last = con.execute(
            f"select count(*), count(partner), min(created_at), max(created_at) from {docs}"
        ).fetchone()
        out["documents"] = {"count": n, "partner_documents": partners, "created_from": str(first), "created_to": str(last)}
    else:
        out["documents"] = {"count": 0}
    if lake.exists("events"):
        events = lake.scan("events")
        n, users, first, last = con.execute(f"select count(*), count(distinct user_id), min(ts), max(ts) from {events}").fetchone()
        rows = con.execute(
            f"""select domain,
                       count(*) filter (where type = 'impression') as impressions,
                       count(*) filter (where type = 'click') as clicks,
                       count(*) filter (where type = 'search') as searches,
                       count(distinct user_id) as users
                from {events} group by domain order by domain"""
        ).fetchall()
        out["events"] = {
            "count": n,
            "users": users,
            "from": str(first),
            "to": str(last),
            "by_domain": {
                d: {"impressions": i, "clicks": c, "searches": s, "users": u, "ctr": round(c / i, 4) if i else None}
                for d, i, c, s, u in rows
            },
        }
    else:
        out["events"] = {"count": 0}
    quarantined = sorted(settings.quarantine_dir.glob("*.jsonl")) if settings.quarantine_dir.is_dir() else []
    out["quarantine"] = {"files": len(quarantined), "records": sum(_lines(p) for p in quarantined)}
    return out


def _lines(path: Any) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"lake: {summary['lake']}"]
    d = summary["documents"]
    lines.append(f"documents: {d['count']}" + (f" (partner: {d['partner_documents']}, created {d['created_from']} .. {d['created_to']})" if d["count"] else ""))
    e = summary["events"]
    lines.append(f"events: {e['count']}" + (f" from {e['users']} users, {e['from']} .. {e['to']}" if e["count"] else ""))
    for domain, row in e.get("by_domain", {}).items():
        ctr = "-" if row["ctr"] is None else f"{row['ctr']:.2%}"
        lines.append(f"  {domain:<9} users={row['users']:<7} impressions={row['impressions']:<9} clicks={row['clicks']:<8} searches={row['searches']:<7} ctr={ctr}")
    q = summary["quarantine"]
    lines.append(f"quarantine: {q['records']} records in {q['files']} files")
    return "\n".join(lines)
