"""Ingest throughput through the full adapter pipeline (map, validate, identity, ids,
labels, code mapping, provenance, indexing, transactions), in resources per second
per core, and the ingest's peak memory (it must stream, not load the feed whole).

A synthetic community-services extract of N patients (the community adapter's own
format) is generated, then ingested in a child process whose CPU time and peak RSS are
measured with getrusage.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.population import nhs_number


def write_feed(folder: Path, patients: int, contacts_per_patient: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)

    def table(name: str, header: list[str], rows) -> None:  # noqa: ANN001
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)

    table("patients.csv", ["PATIENT_ID", "NHS_NUMBER", "SURNAME", "FORENAMES", "DOB", "SEX", "POSTCODE", "GP_PRACTICE_CODE"],
          ([f"B-{i}", nhs_number(300_000 + i), f"BENCH{i}", "Alex", "1950-01-01", "F" if i % 2 else "M", "L5 6PX", "N82001"]
           for i in range(patients)))
    table("referrals.csv", ["REFERRAL_ID", "PATIENT_ID", "SERVICE", "REFERRAL_SOURCE", "RECEIVED_DATE", "PRIORITY", "STATUS", "DISCHARGED_DATE"],
          ([f"R-{i}", f"B-{i}", "District Nursing", "GP", "2026-10-01", "Routine", "Open", ""] for i in range(patients)))
    table("contacts.csv", ["CONTACT_ID", "REFERRAL_ID", "PATIENT_ID", "CONTACT_DATETIME", "LOCATION", "CLINICIAN_NAME", "CLINICIAN_ROLE", "OUTCOME", "ATTENDED"],
          ([f"C-{i}-{k}", f"R-{i}", f"B-{i}", f"2026-10-{k + 2:02d}T09:30", "Home", "Nurse A. Begum", "District Nurse", "Seen", "Y"]
           for i in range(patients) for k in range(contacts_per_patient)))
    table("activities.csv", ["ACTIVITY_ID", "CONTACT_ID", "SNOMED_CODE", "DESCRIPTION"],
          ([f"A-{i}-{k}", f"C-{i}-{k}", "225358003", "Wound care"] for i in range(patients) for k in range(contacts_per_patient)))
    table("observations.csv", ["OBSERVATION_ID", "CONTACT_ID", "CODE_SYSTEM", "CODE", "DESCRIPTION", "VALUE", "UNIT"],
          ([f"O-{i}-{k}", f"C-{i}-{k}", "LOCAL", "WATERLOW", "Waterlow pressure ulcer risk score", str(10 + k), "score"]
           for i in range(patients) for k in range(contacts_per_patient)))
    table("eol_register.csv", ["RECORD_ID", "PATIENT_ID", "ON_REGISTER_DATE", "CPR_DECISION", "CPR_DECISION_DATE", "CPR_REVIEW_DATE",
                               "CPR_DECIDED_BY", "RESPECT_FORM", "RESPECT_CARE_PRIORITY", "PREFERRED_PLACE_OF_CARE",
                               "PREFERRED_PLACE_OF_DEATH", "LPA_HEALTH_WELFARE", "LPA_NAME", "LPA_PHONE", "ADRT", "ADRT_DETAIL",
                               "STATUS", "LAST_UPDATED"], [])


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from adapters.pipeline import ingest
from adapters.registry import load
from exchange.db.engine import make_engine
from exchange.db.migrate import upgrade
from exchange.settings import Settings
url, folder, var = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
upgrade(url)
settings = Settings(database_url=url, var_dir=var)
engine = make_engine(url)
cpu0, t0 = time.process_time(), time.perf_counter()
report = ingest(engine, settings, load("community"), [folder])
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
data = report.to_dict() if hasattr(report, "to_dict") else {}
counts = data.get("counts", {})
written = sum(counts.get(k, 0) for k in ("created", "updated"))
print("RESULT " + json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "resources": written, "counts": counts,
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def measure_ingest(patients: int, database: str, postgres_url: str) -> dict:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed"
        write_feed(feed, patients)
        if database == "sqlite":
            url = f"sqlite:///{tmp}/ingest.db"
        else:
            from sqlalchemy import create_engine, text

            from exchange.db.engine import normalise_url

            admin = create_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
            name = "exchange_bench_ingest"
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                c.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            url = normalise_url(postgres_url).rsplit("/", 1)[0] + "/" + name
        out = subprocess.run([sys.executable, "-c", CHILD, url, str(feed), str(Path(tmp) / "var")],
                             capture_output=True, text=True, cwd=root, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"error": (out.stderr or out.stdout)[-800:]}
    data = json.loads(line[7:])
    if data["cpu_s"]:
        data["resources_per_cpu_s"] = round(data["resources"] / data["cpu_s"], 1)
    if data["wall_s"]:
        data["resources_per_wall_s"] = round(data["resources"] / data["wall_s"], 1)
    return data
