"""QIDO-RS sequence matching on PostgreSQL: what a sequence key costs in SQL next to a plain
key, at scale, in process (no HTTP: the hub's per-request path is measured by
dicomweb_bench.py).

Builds a fresh PostgreSQL database (127.0.0.1:5432, user postgres) with the hub's schema and
one collection of `--studies` studies, one series each, COPY-loaded with their sequence
values as ingest writes them: a Procedure Code Sequence of two items per study (a common LOINC
code and a local one) and a Request Attributes Sequence of one or two items per series. Then
runs each query of the mix `--repeat` times through `hub.collections.query.parse` and `run`
(limit 50), and prints p50/p99 per query and the server's EXPLAIN ANALYZE time: once on the
hub's engine (`hub.db.make_engine`: no server-side prepared statements) and once on psycopg's
default, which prepares a statement after 5 runs (PostgreSQL may then use a generic plan).

    .venv/bin/python bench/sequence_bench.py                  # 100k studies
    .venv/bin/python bench/sequence_bench.py --studies 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from hub.collections import query  # noqa: E402
from hub.collections.models import Collection  # noqa: E402
from hub.collections.sequences import tag_of  # noqa: E402
from hub.db import create_schema, make_engine  # noqa: E402
from hub.models import Organization  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
CODES = [f"{24000 + n}-{n % 10}" for n in range(200)]  # 200 procedure codes
REQUESTS = ["CT CHEST", "CT HEAD", "MR BRAIN", "MR SPINE", "CR CHEST", "US ABDOMEN", "PT WB"]

MIX: list[tuple[str, query.Level, list[tuple[str, str]]]] = [
    ("plain: modality + year", "study",
     [("ModalitiesInStudy", "CT"), ("StudyDate", "20200101-20201231")]),
    ("plain: description wildcard", "study", [("StudyDescription", "CT*")]),
    ("seq: one code (0.5 %)", "study", [("ProcedureCodeSequence.CodeValue", CODES[7])]),
    ("seq: code + scheme, same item", "study",
     [("ProcedureCodeSequence.CodeValue", CODES[7]),
      ("ProcedureCodeSequence.CodingSchemeDesignator", "LN")]),
    ("seq: code + scheme, no item has both", "study",
     [("ProcedureCodeSequence.CodeValue", CODES[7]),
      ("ProcedureCodeSequence.CodingSchemeDesignator", "99LOCAL")]),
    ("seq: series, wildcard (30 %)", "series",
     [("RequestAttributesSequence.RequestedProcedureDescription", "MR*")]),
    ("seq + plain: series, modality + request", "series",
     [("Modality", "CT"), ("RequestAttributesSequence.RequestedProcedureDescription", "CT H*")]),
]  # fmt: skip


def load(raw_url: str, collection_id: int, studies: int, seed: int = 11) -> float:
    rng = random.Random(seed)
    started = time.perf_counter()
    pcs, ras = tag_of("ProcedureCodeSequence"), tag_of("RequestAttributesSequence")
    code, scheme, meaning = tag_of("CodeValue"), tag_of("CodingSchemeDesignator"), "00080104"
    described, step = tag_of("RequestedProcedureDescription"), "00400007"
    with psycopg.connect(raw_url) as conn, conn.cursor() as cur:
        values: list[tuple[Any, ...]] = []
        series: list[tuple[Any, ...]] = []
        study_copy = "COPY collection_study (collection_id, study_uid, study_date, study_time, "
        study_copy += "accession, study_id, description, patient_id, patient_name, patient_sex, "
        study_copy += "modalities, series_count, instance_count, attributes) FROM STDIN"
        with cur.copy(study_copy) as st:
            for n in range(studies):
                uid, modality = f"2.25.{10**20 + n}", rng.choice(["CT", "CT", "MR", "CR", "US"])
                day = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(11 * 365))
                date = day.strftime("%Y%m%d")
                st.write_row((collection_id, uid, date, "101010", f"A{n}", str(n), f"{modality} X",
                              f"P{n}", f"P{n}", "F", f"\\{modality}\\", 1, 1, "{}"))  # fmt: skip
                values += [
                    (collection_id, uid, pcs, 0, code, rng.choice(CODES)),
                    (collection_id, uid, pcs, 0, scheme, "LN"),
                    (collection_id, uid, pcs, 0, meaning, "procedure"),
                    (collection_id, uid, pcs, 1, code, f"L{rng.randrange(1000)}"),
                    (collection_id, uid, pcs, 1, scheme, "99LOCAL"),
                    (collection_id, uid, pcs, 1, meaning, "local"),
                ]
                series_uid = f"{uid}.1"
                series.append(
                    (collection_id, uid, series_uid, modality, 1, "", "", date, "", 1, "{}")
                )
                for item in range(rng.choice([1, 1, 2])):
                    values.append((collection_id, series_uid, ras, item, described,
                                   rng.choice(REQUESTS)))  # fmt: skip
                    values.append((collection_id, series_uid, ras, item, step, "STEP"))
        series_copy = "COPY collection_series (collection_id, study_uid, series_uid, modality, "
        series_copy += "series_number, description, body_part, series_date, series_time, "
        series_copy += "instance_count, attributes) FROM STDIN"
        with cur.copy(series_copy) as se:
            for row in series:
                se.write_row(row)
        value_copy = "COPY collection_sequence_value (collection_id, owner, sequence, item, "
        value_copy += "item_key, value) FROM STDIN"
        with cur.copy(value_copy) as sv:
            for row in values:
                sv.write_row(row)
        conn.commit()
        for table in ("collection_study", "collection_series", "collection_sequence_value"):
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        conn.commit()
        print(f"loaded {studies} studies, {len(values)} sequence values", flush=True)
    return time.perf_counter() - started


def measure(session: Session, collection: Collection, repeat: int) -> list[dict[str, Any]]:
    results = []
    for label, level, params in MIX:
        parsed = query.parse(level, [*params, ("limit", "50")], max_limit=1000)
        times, found = [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            page = query.run(session, collection, parsed, urls=lambda *_: "")
            times.append((time.perf_counter() - t0) * 1000)
            found = len(page.results)
        statement = _sql(session, collection, parsed)
        plan = session.connection().exec_driver_sql("EXPLAIN ANALYZE " + statement).all()
        server = next((r[0] for r in plan if r[0].startswith("Execution Time")), "")
        times.sort()
        results.append({
            "query": label, "results": found, "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
            "server": server.removeprefix("Execution Time: "),
        })  # fmt: skip
        print(results[-1], flush=True)
    return results


def _sql(session: Session, collection: Collection, parsed: query.QidoQuery) -> str:
    """The statement `query.run` sends, with its values inlined, for EXPLAIN."""
    captured: list[Any] = []
    original = session.exec

    def capture(statement: Any, *args: Any, **kwargs: Any) -> Any:
        if not captured:
            captured.append(statement)
        return original(statement, *args, **kwargs)

    session.exec = capture  # type: ignore[method-assign]
    try:
        query.run(session, collection, parsed, urls=lambda *_: "")
    finally:
        session.exec = original  # type: ignore[method-assign]
    compiled = captured[0].compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database (for EXPLAIN)")
    args = parser.parse_args(argv)
    name = f"hexchange_sequence_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(**PG, dbname="postgres", autocommit=True)  # type: ignore[arg-type]
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        create_schema(engine)
        with Session(engine) as session:
            session.add(Organization(id="org-r", name="Research"))
            session.commit()
            session.add(Collection(name="bench", org="org-r", key_id="k", public_key="k",
                                   sealed_private_key="k"))  # fmt: skip
            session.commit()
            collection = session.exec(select(Collection)).one()
        seconds = load(f"postgresql://postgres@127.0.0.1:5432/{name}", collection.id or 0,
                       args.studies)  # fmt: skip
        results: dict[str, Any] = {}
        # the hub's engine, then psycopg's default (server-side prepared after 5 runs)
        prepared = create_engine(engine.url.render_as_string(hide_password=False))
        for label, which in (("hub engine", engine), ("prepared after 5 runs", prepared)):
            print(label, flush=True)
            with Session(which) as session:
                results[label] = measure(session, collection, args.repeat)
        prepared.dispose()
        report = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.platform()} · {platform.python_version()}",
            "studies": args.studies, "load_seconds": round(seconds, 1), "results": results,
        }  # fmt: skip
        print(json.dumps(report, indent=2))
    finally:
        engine.dispose()
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        if args.keep:
            print(f"kept database {name}")
        else:
            admin.execute(drop.format(sql.Identifier(name)))
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
