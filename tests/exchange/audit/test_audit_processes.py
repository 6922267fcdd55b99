"""Several server processes appending to one chain at once (issue 7, "several workers")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from exchange.audit.tables import audit_checkpoint, audit_event
from exchange.audit.verify import verify

WORKER = """
import sys, threading
from exchange.audit.sink import AuditSink
from exchange.db.engine import make_engine
from exchange.pipeline.context import Requester, RequestContext
from exchange.settings import Settings

url, var_dir, tag = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings(database_url=url, var_dir=__import__("pathlib").Path(var_dir),
                    extra={"audit_checkpoint_every": 7})
engine = make_engine(url)
sink = AuditSink(engine, settings)
who = Requester(kind="user", client_id=tag, practitioner_id=tag, organization="A81001",
                purpose_of_use="TREAT")

def work(k):
    for j in range(20):
        ctx = RequestContext(requester=who, path=f"/fhir/Patient/{tag}-{k}-{j}", interaction="read",
                             resource_type="Patient", resource_id=f"{tag}-{k}-{j}")
        ctx.outcome_status = 200
        sink.record(ctx)

threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
sink.close()
print(sink.events_written, sink.batches)
"""


def test_two_processes_share_one_verifiable_chain(audit_db) -> None:  # noqa: ANN001
    engine, settings = audit_db
    settings = settings.with_(extra={"audit_checkpoint_every": 7})
    url = engine.url.render_as_string(hide_password=False)
    root = Path(__file__).resolve().parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(settings.var_dir), f"w{i}"],
                              cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.split()[0] == "60"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_event)).scalar() == 120
        assert conn.execute(select(func.max(audit_event.c.seq))).scalar() == 120
        assert conn.execute(select(func.count()).select_from(audit_checkpoint)).scalar() >= 1
        clients = set(conn.execute(select(audit_event.c.client_id)).scalars())
    assert clients == {"w0", "w1"}
    result = verify(engine, settings)
    assert result.ok, result.summary()
    assert result.events_checked == 120
